package identity

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// Role sync: when a provider maps a roles claim (claim_mapping.roles), every
// sign-in through it sets the identity's provider-managed roles to the claim's
// (ssoLogin.managesRole: the provider's allowed_roles, admin only when listed).
// Roles the provider does not manage (granted by an admin, or by another
// provider's list) are left alone. A role taken away retires the identity's live
// access tokens, as UpdateIdentity does, and the change is an identity.updated
// event and an "identity.sso.roles_synced" audit record.

// actionRolesSynced is the audit action of a sign-in that changed roles.
const actionRolesSynced = "identity.sso.roles_synced"

// rolesSync is a committed role change's follow-up: the caches to settle and the
// audit record to hand over.
type rolesSync struct {
	fallout fallout
	record  *audit.Record
}

// syncSSORoles applies the roles claim to identity id, in tx (which it locks).
func (s *Service) syncSSORoles(ctx context.Context, tx *store.Tx, login ssoLogin, who ssoIdentity, id uuid.UUID) (rolesSync, error) {
	if !who.syncRoles {
		return rolesSync{}, nil
	}
	cur, err := tx.GetIdentityForUpdate(ctx, id)
	if err := store.MapErr(err); err != nil {
		return rolesSync{}, fmt.Errorf("lock identity %s for role sync: %w", id, err)
	}
	next := login.syncedRoles(cur.Role, cur.Roles, who.roles)
	if sameRoles(next, cur.Roles) {
		return rolesSync{}, nil
	}
	row, err := tx.UpdateIdentity(ctx, sqlc.UpdateIdentityParams{ID: id, SetRoles: true, Roles: next, Claims: []byte("{}")})
	if err := store.MapErr(err); err != nil {
		return rolesSync{}, fmt.Errorf("sync roles of identity %s: %w", id, err)
	}
	ident, err := identityToProto(row)
	if err != nil {
		return rolesSync{}, err
	}
	if err := s.emit(ctx, tx, login.Tenant, "identity.updated", ident.GetId(), s.redactedForEvent(ctx, tx, ident)); err != nil {
		return rolesSync{}, err
	}
	// Cached API-key verifications carry the roles.
	f, err := credentialsOf(ctx, tx, id)
	if err != nil {
		return rolesSync{}, err
	}
	if rolesTaken(allRoles(cur.Role, cur.Roles), allRoles(row.Role, row.Roles)) {
		g, err := s.retireTokenGenerations(ctx, tx, login.Tenant, id)
		if err != nil {
			return rolesSync{}, err
		}
		f.generations = append(f.generations, g)
	}
	rec := audit.FromRequest(ctx, login.Tenant.String(), actionRolesSynced)
	rec.ResourceType, rec.ResourceID = "identity", id.String()
	rec.Actor.IdentityID, rec.Actor.ExternalID = id.String(), row.ExternalID
	rec.Before = audit.JSON(map[string]any{"role": cur.Role, "roles": nonNilStrings(cur.Roles)})
	rec.After = audit.JSON(map[string]any{"role": row.Role, "roles": nonNilStrings(row.Roles), "provider": login.ProviderName})
	return rolesSync{fallout: f, record: &rec}, nil
}

// settleRoles does a committed sync's follow-up.
func (s *Service) settleRoles(ctx context.Context, rs rolesSync) {
	s.settle(ctx, &rs.fallout)
	if rs.record != nil && s.audit != nil {
		audit.Emit(ctx, s.audit, *rs.record)
	}
}
