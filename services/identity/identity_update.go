package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

const (
	// revokeIdentityInactive is the revoke reason of the sessions of an identity
	// that was deactivated or deleted.
	revokeIdentityInactive = "identity_inactive"
	// maxBulkIdentities bounds the items of a bulk call (the proto says so too).
	maxBulkIdentities = 1000
	maxExternalIDLen  = 320
	maxExtraRoles     = 32
)

// roleNamePattern is CreateIdentityRequest's constraint on role names; the Identity
// message of an update carries no constraints, so the handler applies it.
var roleNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// fallout is what a committed change to identities leaves for this process to do:
// refuse the revoked sessions' tokens and drop the identities' keys from the
// verification caches. Other processes learn the same from the events.
type fallout struct {
	identities  []string
	keys        []sqlc.IdentityApiKey
	sessions    []sqlc.IdentitySession
	generations []retiredGeneration
}

func (f *fallout) add(o fallout) {
	f.identities = append(f.identities, o.identities...)
	f.keys = append(f.keys, o.keys...)
	f.sessions = append(f.sessions, o.sessions...)
	f.generations = append(f.generations, o.generations...)
}

// rolesTaken reports whether a role of before is missing from after.
func rolesTaken(before, after []string) bool {
	for _, r := range before {
		if !slices.Contains(after, r) {
			return true
		}
	}
	return false
}

// settle applies f once its transaction has committed. The identity's eviction is
// recorded first, so an in-flight verification that read the identity before the
// change cannot put it back into the cache (apiKeyCache.put).
func (s *Service) settle(ctx context.Context, f *fallout) {
	ctx = context.WithoutCancel(ctx)
	s.applyRevocations(f.sessions)
	s.applyGenerations(f.generations)
	if s.keyCache != nil {
		now := time.Now()
		for _, id := range f.identities {
			s.keyCache.evict(id, now)
		}
	}
	for _, k := range f.keys {
		s.forgetKey(ctx, k)
	}
}

// credentialsOf collects what the caches may hold for an identity, in tx.
func credentialsOf(ctx context.Context, tx *store.Tx, id uuid.UUID) (fallout, error) {
	keys, err := tx.ListIdentityAPIKeys(ctx, id)
	if err != nil {
		return fallout{}, fmt.Errorf("list api keys of identity %s: %w", id, err)
	}
	return fallout{identities: []string{id.String()}, keys: keys}, nil
}

func isSelf(p *auth.Principal, id uuid.UUID) bool {
	mine, err := uuid.Parse(p.IdentityID)
	return err == nil && mine == id
}

// updateParams turns the request into the query's parameters: which fields change
// and to what. An empty mask means every field the identity sets; is_active counts
// as set only when true, since false cannot be told from absent.
func updateParams(in *identityv1.Identity, paths []string, replaceClaims bool) (sqlc.UpdateIdentityParams, error) {
	params := sqlc.UpdateIdentityParams{Roles: []string{}, Claims: []byte("{}"), ReplaceClaims: replaceClaims}
	if len(paths) == 0 {
		if in.GetExternalId() != "" {
			paths = append(paths, "external_id")
		}
		if in.GetRole() != "" {
			paths = append(paths, "role")
		}
		if len(in.GetRoles()) > 0 {
			paths = append(paths, "roles")
		}
		if in.GetClaims() != nil {
			paths = append(paths, "claims")
		}
		if in.GetIsActive() {
			paths = append(paths, "is_active")
		}
		if len(paths) == 0 {
			return params, apierr.Field("update_mask", "is empty and the identity sets no field to change")
		}
	}
	for _, path := range paths {
		switch path {
		case "external_id":
			if n := utf8.RuneCountInString(in.GetExternalId()); n < 1 || n > maxExternalIDLen {
				return params, apierr.Field("identity.external_id", "must be 1 to %d characters", maxExternalIDLen)
			}
			params.SetExternalID, params.ExternalID = true, in.GetExternalId()
		case "role":
			if !roleNamePattern.MatchString(in.GetRole()) {
				return params, apierr.Field("identity.role", "must be a role name: a lower-case letter, then up to 63 lower-case letters, digits, '_' or '-'")
			}
			params.SetRole, params.Role = true, in.GetRole()
		case "roles":
			if len(in.GetRoles()) > maxExtraRoles {
				return params, apierr.Field("identity.roles", "must hold at most %d roles", maxExtraRoles)
			}
			for i, r := range in.GetRoles() {
				if !roleNamePattern.MatchString(r) {
					return params, apierr.Field(fmt.Sprintf("identity.roles[%d]", i), "must be a role name: a lower-case letter, then up to 63 lower-case letters, digits, '_' or '-'")
				}
			}
			params.SetRoles = true
			params.Roles = append(params.Roles, in.GetRoles()...)
		case "claims":
			claims, err := claimsJSON(in.GetClaims())
			if err != nil {
				return params, apierr.Field("identity.claims", "cannot be stored: %v", err)
			}
			params.SetClaims, params.Claims = true, claims
		case "is_active":
			params.SetIsActive, params.IsActive = true, in.GetIsActive()
		case "id":
			// Names the identity rather than changing it: the REST gateway infers a
			// PATCH's mask from the body, which may carry the id.
		default:
			return params, apierr.Field("update_mask", "%q cannot be changed; only external_id, role, roles, claims and is_active can", path)
		}
	}
	if !params.SetExternalID && !params.SetRole && !params.SetRoles && !params.SetClaims && !params.SetIsActive {
		return params, apierr.Field("update_mask", "names no field to change")
	}
	return params, nil
}

// sameRoles reports whether two role lists hold the same roles, in any order.
func sameRoles(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func (s *identityServer) UpdateIdentity(ctx context.Context, req *identityv1.UpdateIdentityRequest) (*identityv1.UpdateIdentityResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetIdentity()
	id, err := parseID("identity.id", in.GetId())
	if err != nil {
		return nil, err
	}
	params, err := updateParams(in, req.GetUpdateMask().GetPaths(), req.GetReplaceClaims())
	if err != nil {
		return nil, err
	}
	params.ID = id
	admin := isAdmin(p)
	if !admin && !isSelf(p, id) {
		return nil, apierr.PermissionDenied("only tenant admins update other identities")
	}
	var granted []string
	if params.SetRole {
		granted = append(granted, params.Role)
	}
	if params.SetRoles {
		granted = append(granted, params.Roles...)
	}
	if err := checkGrant(p, granted...); err != nil {
		return nil, err
	}
	var ident *identityv1.Identity
	var f fallout
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		f = fallout{}
		cur, err := tx.GetIdentityForUpdate(ctx, id)
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return apierr.NotFound("identity", in.GetId())
			}
			return err
		}
		if err := checkIdentityPolicy(ctx, cur, false); err != nil {
			return err
		}
		if err := checkActsFor(p, cur.Claims, in.GetClaims()); err != nil {
			return err
		}
		upd := params
		if params.SetClaims {
			names, err := sensitiveNamesOf(ctx, tx, tenant)
			if err != nil {
				return err
			}
			redactAudit(ctx, names)
			var sensitive map[string]json.RawMessage
			if upd.Claims, sensitive, err = splitClaims(params.Claims, names); err != nil {
				return err
			}
			if err := s.svc.writeSensitiveClaims(ctx, tx, tenant, id, sensitive, params.ReplaceClaims); err != nil {
				return err
			}
		}
		if !admin {
			// Sending back the current value is not a change: a client may PUT the
			// whole identity it read.
			if (params.SetRole && params.Role != cur.Role) || (params.SetRoles && !sameRoles(params.Roles, cur.Roles)) {
				return apierr.PermissionDenied("only tenant admins change an identity's roles, their own included")
			}
			if params.SetIsActive && params.IsActive != cur.IsActive {
				return apierr.PermissionDenied("only tenant admins activate or deactivate an identity, their own included")
			}
		}
		row, err := tx.UpdateIdentity(ctx, upd)
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return apierr.AlreadyExists("an identity with external_id %q exists", params.ExternalID)
			}
			return err
		}
		if ident, err = identityToProto(row); err != nil {
			return err
		}
		if err := s.svc.emit(ctx, tx, tenant, "identity.updated", ident.GetId(), s.svc.redactedForEvent(ctx, tx, ident)); err != nil {
			return err
		}
		if err := s.svc.fillSensitiveClaims(ctx, tx, ident); err != nil {
			return err
		}
		// Cached API-key verifications carry the identity's external_id and roles
		// and depend on it being active; claims are not cached.
		if params.SetExternalID || params.SetRole || params.SetRoles || params.SetIsActive {
			if f, err = credentialsOf(ctx, tx, id); err != nil {
				return err
			}
		}
		if cur.IsActive && !row.IsActive {
			f.sessions, err = s.svc.revokeIdentitySessions(ctx, tx, tenant, id, nil, revokeIdentityInactive)
			return err
		}
		// A role taken away must not live on in access tokens for their last
		// minutes: the identity's current tokens are retired (sessions stay; a
		// refresh gets the roles as they are now).
		if rolesTaken(allRoles(cur.Role, cur.Roles), allRoles(row.Role, row.Roles)) {
			g, err := s.svc.retireTokenGenerations(ctx, tx, tenant, id)
			if err != nil {
				return err
			}
			f.generations = append(f.generations, g)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.svc.settle(ctx, &f)
	return &identityv1.UpdateIdentityResponse{Identity: ident}, nil
}

func (s *identityServer) DeleteIdentity(ctx context.Context, req *identityv1.DeleteIdentityRequest) (*identityv1.DeleteIdentityResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	var f fallout
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		f, err = s.svc.deleteIdentity(ctx, tx, tenant, p, id, req.GetHard())
		return err
	})
	if err != nil {
		return nil, err
	}
	s.svc.settle(ctx, &f)
	return &identityv1.DeleteIdentityResponse{}, nil
}

// deleteIdentity soft-deletes (or with hard, purges) an identity in tx, revokes its
// sessions and API keys (purged ones go with the row) and writes identity.deleted,
// and for a purge identity.purged (the memory service deletes its memories on it).
// The returned fallout drops the keys from the caches once tx commits.
func (s *Service) deleteIdentity(ctx context.Context, tx *store.Tx, tenant uuid.UUID, p *auth.Principal, id uuid.UUID, hard bool) (fallout, error) {
	if !isAdmin(p) && !isSelf(p, id) {
		return fallout{}, apierr.PermissionDenied("only tenant admins delete other identities")
	}
	row, f, err := s.removeIdentity(ctx, tx, tenant, id, hard, false)
	if err != nil {
		return fallout{}, err
	}
	ident, err := identityToProto(row)
	if err != nil {
		return fallout{}, err
	}
	if err := s.emit(ctx, tx, tenant, "identity.deleted", ident.GetId(), ident); err != nil {
		return fallout{}, err
	}
	if hard {
		if err := s.emitPurged(ctx, tx, tenant, id); err != nil {
			return fallout{}, err
		}
	}
	return f, nil
}

// removeIdentity is the deletion itself, without the event: it soft-deletes (or
// with hard, purges) the identity and revokes its sessions and API keys. Erasure
// purges through it too (erase: the revocation events carry ids only) and
// announces identity.erased instead, an event that carries no personal data.
func (s *Service) removeIdentity(ctx context.Context, tx *store.Tx, tenant, id uuid.UUID, hard, erase bool) (sqlc.IdentityIdentity, fallout, error) {
	// The lock holds back sign-ins that would open a session after the revocation
	// below: their session insert waits for this transaction.
	row, err := tx.LockIdentity(ctx, id)
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return row, fallout{}, apierr.NotFound("identity", id.String())
		}
		return row, fallout{}, err
	}
	switch {
	case hard:
		// Purged below, once keys are collected and sessions revoked (the purge
		// cascades them away). A soft-deleted identity can still be purged.
	case row.DeleteTime != nil:
		return row, fallout{}, apierr.NotFound("identity", id.String())
	default:
		if row, err = tx.SoftDeleteIdentity(ctx, id); err != nil {
			return row, fallout{}, fmt.Errorf("soft-delete identity %s: %w", id, store.MapErr(err))
		}
	}
	f, err := credentialsOf(ctx, tx, id)
	if err != nil {
		return row, fallout{}, err
	}
	revoke := s.revokeIdentitySessions
	if erase {
		revoke = s.revokeErasedSessions
	}
	if f.sessions, err = revoke(ctx, tx, tenant, id, nil, revokeIdentityInactive); err != nil {
		return row, fallout{}, err
	}
	if !hard {
		// The keys would already fail on the deleted identity; revoking them says so
		// in the key list and its events, and keeps them dead if it is restored.
		for i, k := range f.keys {
			if k.RevokeTime != nil {
				continue
			}
			if err := s.revokeKey(ctx, tx, tenant, k.ID, "identity_deleted", &f.keys[i]); err != nil {
				return row, fallout{}, fmt.Errorf("revoke api key %s: %w", k.ID, err)
			}
		}
	}
	if hard {
		if row, err = tx.HardDeleteIdentity(ctx, id); err != nil {
			return row, fallout{}, fmt.Errorf("purge identity %s: %w", id, store.MapErr(err))
		}
	}
	return row, f, nil
}

// itemStatus is the google.rpc.Status of one bulk item; internal failures are
// masked for the client and logged here.
func (s *Service) itemStatus(ctx context.Context, method string, i int, err error) *status.Status {
	if err == nil {
		return &status.Status{Code: int32(codes.OK)}
	}
	st, internal := apierr.ToStatus(err)
	if internal {
		s.logger.ErrorContext(ctx, "bulk item failed", "method", method, "item", i, "err", err)
	}
	return st.Proto()
}

// itemErr names an item's invalid fields by their place in the bulk request.
func itemErr(err error, prefix string) error {
	var e *apierr.Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || len(e.Violations) == 0 {
		return err
	}
	vs := make([]apierr.Violation, 0, len(e.Violations))
	for _, v := range e.Violations {
		vs = append(vs, apierr.Violation{Field: prefix + "." + v.GetField(), Description: v.GetDescription()})
	}
	return apierr.InvalidArgumentReason(e.Reason, vs...).Wrap(err)
}

func (s *identityServer) BulkCreateIdentities(ctx context.Context, req *identityv1.BulkCreateIdentitiesRequest) (*identityv1.BulkCreateIdentitiesResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	items := req.GetIdentities()
	if len(items) == 0 || len(items) > maxBulkIdentities {
		return nil, apierr.Field("identities", "must hold 1 to %d items", maxBulkIdentities)
	}
	results := make([]*identityv1.BulkCreateIdentityResult, len(items))
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		names, err := sensitiveNamesOf(ctx, tx, tenant)
		if err != nil {
			return err
		}
		redactAudit(ctx, names)
		for i, item := range items {
			prefix := fmt.Sprintf("identities[%d]", i)
			var ident *identityv1.Identity
			var err error
			if item.GetIssueToken() {
				// Tokens are handed out one identity at a time, where the response
				// that carries them is not one of a thousand.
				err = apierr.Field(prefix+".issue_token", "is not allowed in a bulk create; create the identity alone to get its tokens")
			} else {
				err = tx.Savepoint(ctx, func(sp *store.Tx) error {
					resp, err := idempotent(ctx, sp, tenant, "CreateIdentity", item.GetIdempotencyKey(), item, &identityv1.CreateIdentityResponse{},
						func() (*identityv1.CreateIdentityResponse, error) {
							created, err := s.svc.createIdentity(ctx, sp, tenant, p, item)
							if err != nil {
								return nil, err
							}
							return &identityv1.CreateIdentityResponse{Identity: created}, nil
						})
					if err != nil {
						return err
					}
					ident = resp.GetIdentity()
					return nil
				})
				err = itemErr(err, prefix)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				ident = nil
			}
			results[i] = &identityv1.BulkCreateIdentityResult{Status: s.svc.itemStatus(ctx, "BulkCreateIdentities", i, err), Identity: ident}
		}
		// Stored idempotent answers carry "[redacted]" for sensitive claims.
		var created []*identityv1.Identity
		for _, r := range results {
			if r.GetIdentity() != nil {
				created = append(created, r.GetIdentity())
			}
		}
		return s.svc.fillSensitiveClaims(ctx, tx, created...)
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.BulkCreateIdentitiesResponse{Results: results}, nil
}

func (s *identityServer) BulkDeleteIdentities(ctx context.Context, req *identityv1.BulkDeleteIdentitiesRequest) (*identityv1.BulkDeleteIdentitiesResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	ids := req.GetIds()
	if len(ids) == 0 || len(ids) > maxBulkIdentities {
		return nil, apierr.Field("ids", "must hold 1 to %d items", maxBulkIdentities)
	}
	results := make([]*identityv1.BulkDeleteIdentityResult, len(ids))
	var f fallout
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		f = fallout{}
		for i, raw := range ids {
			id, err := parseID(fmt.Sprintf("ids[%d]", i), raw)
			if err == nil {
				var item fallout
				err = tx.Savepoint(ctx, func(sp *store.Tx) error {
					var err error
					item, err = s.svc.deleteIdentity(ctx, sp, tenant, p, id, req.GetHard())
					return err
				})
				if err == nil {
					// Only what committed with its savepoint is applied.
					f.add(item)
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			results[i] = &identityv1.BulkDeleteIdentityResult{Id: raw, Status: s.svc.itemStatus(ctx, "BulkDeleteIdentities", i, err)}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.svc.settle(ctx, &f)
	return &identityv1.BulkDeleteIdentitiesResponse{Results: results}, nil
}
