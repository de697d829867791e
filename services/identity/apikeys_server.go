package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/pagination"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// apiKeyServer implements ApiKeyService.
type apiKeyServer struct {
	identityv1.UnimplementedApiKeyServiceServer
	svc *Service
}

var envNames = map[identityv1.ApiKeyEnvironment]string{
	identityv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_LIVE: "live",
	identityv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_TEST: "test",
}

func envFromName(name string) identityv1.ApiKeyEnvironment {
	for k, n := range envNames {
		if n == name {
			return k
		}
	}
	return identityv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_UNSPECIFIED
}

func apiKeyToProto(k sqlc.IdentityApiKey, now time.Time) *identityv1.ApiKey {
	out := &identityv1.ApiKey{
		Id: k.ID.String(), TenantId: k.TenantID.String(), IdentityId: k.IdentityID.String(),
		Name: k.Name, Prefix: auth.APIKeyPrefix + k.Environment + "_" + k.Prefix,
		Environment: envFromName(k.Environment), Scopes: k.Scopes, State: identityv1.ApiKeyState_API_KEY_STATE_ACTIVE,
		CreateTime: timestamppb.New(k.CreateTime), UpdateTime: timestamppb.New(k.UpdateTime),
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if k.ExpireTime != nil {
		out.ExpireTime = timestamppb.New(*k.ExpireTime)
		if !k.ExpireTime.After(now) {
			out.State = identityv1.ApiKeyState_API_KEY_STATE_EXPIRED
		}
	}
	if k.LastUsedTime != nil {
		out.LastUsedTime = timestamppb.New(*k.LastUsedTime)
	}
	if k.RevokeTime != nil {
		out.RevokeTime = timestamppb.New(*k.RevokeTime)
		out.State = identityv1.ApiKeyState_API_KEY_STATE_REVOKED
	}
	if k.CreatorIdentityID != nil {
		out.CreatorIdentityId = k.CreatorIdentityID.String()
	}
	if k.RerolledFromID != nil {
		out.RerolledFromId = k.RerolledFromID.String()
	}
	return out
}

// unrestricted reports whether the caller's credential carries no scope limit.
func unrestricted(p *auth.Principal) bool {
	return len(p.Scopes) == 0 || p.HasScope("*") || p.HasScope("admin")
}

// grantableScopes applies the no-escalation rule to the scopes of a new or changed
// key: a scope-limited credential can only hand out scopes it has itself (an empty
// request inherits them), and only the platform operator can hand out the operator
// scope, whatever else the caller holds.
func grantableScopes(p *auth.Principal, requested []string) ([]string, error) {
	for _, sc := range requested {
		if sc == auth.ScopeOperator && !p.IsOperator() {
			return nil, apierr.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION,
				"cannot grant scope %q", sc)
		}
		if !unrestricted(p) && !p.HasScope(sc) {
			return nil, apierr.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION,
				"cannot grant scope %q: the calling credential does not have it", sc)
		}
	}
	if len(requested) == 0 {
		if unrestricted(p) {
			return []string{}, nil
		}
		return slices.Clone(p.Scopes), nil
	}
	return slices.Compact(slices.Sorted(slices.Values(requested))), nil
}

// keyOwnerAllowed reports whether p may manage keys of identity: its own, or any in
// the tenant for admins.
func keyOwnerAllowed(p *auth.Principal, identity uuid.UUID) bool {
	return p.HasRole(auth.RoleAdmin) || p.IdentityID == identity.String()
}

func (s *apiKeyServer) CreateApiKey(ctx context.Context, req *identityv1.CreateApiKeyRequest) (*identityv1.CreateApiKeyResponse, error) { //nolint:revive // the generated interface names it
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	owner := p.IdentityID
	if req.GetIdentityId() != "" {
		owner = req.GetIdentityId()
	}
	ownerID, err := parseID("identity_id", owner)
	if err != nil {
		return nil, err
	}
	if !keyOwnerAllowed(p, ownerID) {
		return nil, apierr.PermissionDenied("only tenant admins can create keys for other identities")
	}
	scopes, err := grantableScopes(p, req.GetScopes())
	if err != nil {
		return nil, err
	}
	env := envNames[req.GetEnvironment()]
	if env == "" {
		env = s.svc.keyEnv
	}
	var expires *time.Time
	if d := req.GetExpiresInDays(); d > 0 {
		t := time.Now().Add(time.Duration(d) * 24 * time.Hour)
		expires = &t
	}
	creator, _ := uuid.Parse(p.IdentityID)
	var key string
	var resp *identityv1.CreateApiKeyResponse
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		resp, err = idempotent(ctx, tx, tenant, "CreateApiKey", req.GetIdempotencyKey(), req, &identityv1.CreateApiKeyResponse{},
			func() (*identityv1.CreateApiKeyResponse, error) {
				if _, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: ownerID}); err != nil {
					if errors.Is(store.MapErr(err), store.ErrNotFound) {
						return nil, apierr.NotFound("identity", owner)
					}
					return nil, err
				}
				k, row, err := s.svc.issueAPIKeyEnv(ctx, tx, env, tenant, ownerID, req.GetName(), scopes, expires)
				if err != nil {
					return nil, err
				}
				if err := tx.SetAPIKeyOrigin(ctx, sqlc.SetAPIKeyOriginParams{ID: row.ID, CreatorIdentityID: &creator}); err != nil {
					return nil, err
				}
				row.CreatorIdentityID = &creator
				key = k
				ak := apiKeyToProto(row, time.Now())
				if err := s.svc.emit(ctx, tx, tenant, "api_key.created", ak.GetId(), ak); err != nil {
					return nil, err
				}
				// The stored idempotent response never holds the key.
				return &identityv1.CreateApiKeyResponse{ApiKey: ak}, nil
			})
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.Key = key
	return resp, nil
}

func (s *apiKeyServer) ListApiKeys(ctx context.Context, req *identityv1.ListApiKeysRequest) (*identityv1.ListApiKeysResponse, error) { //nolint:revive // the generated interface names it
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListAPIKeysParams{PageLimit: pagination.Size(req.GetPageSize()) + 1, IncludeRevoked: req.GetIncludeRevoked()}
	switch {
	case req.GetAllIdentities():
		if !p.HasRole(auth.RoleAdmin) {
			return nil, apierr.PermissionDenied("only tenant admins can list every identity's keys")
		}
	default:
		owner := p.IdentityID
		if req.GetIdentityId() != "" {
			owner = req.GetIdentityId()
		}
		id, err := parseID("identity_id", owner)
		if err != nil {
			return nil, err
		}
		if !keyOwnerAllowed(p, id) {
			return nil, apierr.PermissionDenied("only tenant admins can list other identities' keys")
		}
		params.IdentityID = &id
	}
	if env := envNames[req.GetEnvironment()]; env != "" {
		params.Environment = &env
	}
	fp := pagination.Fingerprint("api_keys", params.IdentityID, params.Environment, params.IncludeRevoked)
	cursor, err := pagination.DecodeUUID(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params.BeforeID = cursor
	var rows []sqlc.IdentityApiKey
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListAPIKeys(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListApiKeysResponse{ApiKeys: []*identityv1.ApiKey{}}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(rows[len(rows)-1].ID.String(), fp)
	}
	now := time.Now()
	for _, r := range rows {
		resp.ApiKeys = append(resp.ApiKeys, apiKeyToProto(r, now))
	}
	return resp, nil
}

// loadKey reads a key the caller may manage, locked when forUpdate. Keys of other
// tenants and, for non-admins, of other identities are NOT_FOUND alike.
func loadKey(ctx context.Context, tx *store.Tx, p *auth.Principal, rawID string, forUpdate bool) (sqlc.IdentityApiKey, error) {
	id, err := parseID("id", rawID)
	if err != nil {
		return sqlc.IdentityApiKey{}, err
	}
	var row sqlc.IdentityApiKey
	if forUpdate {
		row, err = tx.GetAPIKeyForUpdate(ctx, id)
	} else {
		row, err = tx.GetAPIKey(ctx, id)
	}
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return row, apierr.NotFound("api_key", rawID)
		}
		return row, err
	}
	if !keyOwnerAllowed(p, row.IdentityID) {
		return row, apierr.NotFound("api_key", rawID)
	}
	return row, nil
}

func (s *apiKeyServer) GetApiKey(ctx context.Context, req *identityv1.GetApiKeyRequest) (*identityv1.GetApiKeyResponse, error) { //nolint:revive // the generated interface names it
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var row sqlc.IdentityApiKey
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = loadKey(ctx, tx, p, req.GetId(), false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.GetApiKeyResponse{ApiKey: apiKeyToProto(row, time.Now())}, nil
}

func (s *apiKeyServer) UpdateApiKey(ctx context.Context, req *identityv1.UpdateApiKeyRequest) (*identityv1.UpdateApiKeyResponse, error) { //nolint:revive // the generated interface names it
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetApiKey()
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		if in.GetName() != "" {
			paths = append(paths, "name")
		}
		if in.GetScopes() != nil {
			paths = append(paths, "scopes")
		}
	}
	var setName, setScopes bool
	for _, path := range paths {
		switch path {
		case "name":
			if in.GetName() == "" {
				return nil, apierr.Field("api_key.name", "must not be empty")
			}
			setName = true
		case "scopes":
			setScopes = true
		default:
			return nil, apierr.Field("update_mask", "%q cannot be changed; only name and scopes can", path)
		}
	}
	var scopes []string
	if setScopes {
		if scopes, err = grantableScopes(p, in.GetScopes()); err != nil {
			return nil, err
		}
	}
	var row sqlc.IdentityApiKey
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := loadKey(ctx, tx, p, in.GetId(), true)
		if err != nil {
			return err
		}
		if cur.RevokeTime != nil {
			return apierr.FailedPrecondition("the key is revoked")
		}
		params := sqlc.UpdateAPIKeyParams{ID: cur.ID, Name: cur.Name, Scopes: cur.Scopes}
		if setName {
			params.Name = in.GetName()
		}
		if setScopes {
			params.Scopes = scopes
		}
		if row, err = tx.UpdateAPIKey(ctx, params); err != nil {
			return err
		}
		ak := apiKeyToProto(row, time.Now())
		return s.svc.emit(ctx, tx, tenant, "api_key.updated", ak.GetId(), ak)
	})
	if err != nil {
		return nil, err
	}
	s.svc.forgetKey(ctx, row)
	return &identityv1.UpdateApiKeyResponse{ApiKey: apiKeyToProto(row, time.Now())}, nil
}

func (s *apiKeyServer) RevokeApiKey(ctx context.Context, req *identityv1.RevokeApiKeyRequest) (*identityv1.RevokeApiKeyResponse, error) { //nolint:revive // the generated interface names it
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var row sqlc.IdentityApiKey
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := loadKey(ctx, tx, p, req.GetId(), true)
		if err != nil {
			return err
		}
		if cur.RevokeTime != nil {
			row = cur
			return nil
		}
		return s.svc.revokeKey(ctx, tx, tenant, cur.ID, req.GetReason(), &row)
	})
	if err != nil {
		return nil, err
	}
	s.svc.forgetKey(ctx, row)
	return &identityv1.RevokeApiKeyResponse{ApiKey: apiKeyToProto(row, time.Now())}, nil
}

func (s *Service) revokeKey(ctx context.Context, tx *store.Tx, tenant, id uuid.UUID, reason string, out *sqlc.IdentityApiKey) error {
	row, err := tx.RevokeAPIKey(ctx, sqlc.RevokeAPIKeyParams{ID: id, RevokeReason: reason})
	if err != nil {
		return store.MapErr(err)
	}
	*out = row
	ak := apiKeyToProto(row, time.Now())
	return s.emit(ctx, tx, tenant, "api_key.revoked", ak.GetId(), ak)
}

func (s *apiKeyServer) RerollApiKey(ctx context.Context, req *identityv1.RerollApiKeyRequest) (*identityv1.RerollApiKeyResponse, error) { //nolint:revive // the generated interface names it
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	creator, _ := uuid.Parse(p.IdentityID)
	var key string
	var oldRow, newRow sqlc.IdentityApiKey
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := loadKey(ctx, tx, p, req.GetId(), true)
		if err != nil {
			return err
		}
		now := time.Now()
		if cur.RevokeTime != nil || (cur.ExpireTime != nil && !cur.ExpireTime.After(now)) {
			return apierr.FailedPrecondition("only an active key can be rerolled")
		}
		key, newRow, err = s.svc.issueAPIKeyEnv(ctx, tx, cur.Environment, tenant, cur.IdentityID, cur.Name, cur.Scopes, cur.ExpireTime)
		if err != nil {
			return err
		}
		if err := tx.SetAPIKeyOrigin(ctx, sqlc.SetAPIKeyOriginParams{ID: newRow.ID, CreatorIdentityID: &creator, RerolledFromID: &cur.ID}); err != nil {
			return err
		}
		newRow.CreatorIdentityID, newRow.RerolledFromID = &creator, &cur.ID
		if req.GetOverlapSeconds() == 0 {
			err = s.svc.revokeKey(ctx, tx, tenant, cur.ID, "rerolled", &oldRow)
		} else {
			oldRow, err = tx.EndAPIKeyAt(ctx, sqlc.EndAPIKeyAtParams{ID: cur.ID, EndTime: now.Add(time.Duration(req.GetOverlapSeconds()) * time.Second)})
		}
		if err != nil {
			return store.MapErr(err)
		}
		ev := &identityv1.RerollApiKeyResponse{ApiKey: apiKeyToProto(newRow, now), PreviousApiKey: apiKeyToProto(oldRow, now)}
		return s.svc.emit(ctx, tx, tenant, "api_key.rerolled", oldRow.ID.String(), ev)
	})
	if err != nil {
		return nil, err
	}
	s.svc.forgetKey(ctx, oldRow)
	now := time.Now()
	return &identityv1.RerollApiKeyResponse{ApiKey: apiKeyToProto(newRow, now), Key: key, PreviousApiKey: apiKeyToProto(oldRow, now)}, nil
}

func (s *apiKeyServer) TestApiKey(ctx context.Context, req *identityv1.TestApiKeyRequest) (*identityv1.TestApiKeyResponse, error) { //nolint:revive // the generated interface names it
	unknown := &identityv1.TestApiKeyResponse{Code: identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_UNKNOWN}
	want := ""
	if t := req.GetTenant(); t != "" {
		id, err := s.svc.resolveTenant(ctx, t)
		if err != nil {
			return nil, err
		}
		if id == "" {
			// An unknown tenant holds no keys; the answer is the same as for a
			// wrong key, so tenants cannot be enumerated either.
			if _, _, err := s.svc.checkAPIKey(ctx, req.GetKey()); err != nil {
				return nil, err
			}
			return unknown, nil
		}
		want = id
	} else if p, ok := auth.FromContext(ctx); ok {
		want = p.TenantID
	}
	e, code, err := s.svc.checkAPIKey(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	switch {
	case code == identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_MALFORMED:
		return &identityv1.TestApiKeyResponse{Code: code}, nil
	case e == nil, want != "" && e.TenantID != want:
		return unknown, nil
	case code != identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_VALID:
		return &identityv1.TestApiKeyResponse{Code: code}, nil
	}
	resp := &identityv1.TestApiKeyResponse{
		Valid: true, Code: code, Scopes: e.Scopes, ApiKeyId: e.KeyID,
		Identity: &identityv1.ApiKeyIdentity{Id: e.IdentityID, ExternalId: e.ExternalID, Kind: kindFromName(e.Kind), TenantId: e.TenantID},
	}
	if e.Expire != nil {
		resp.ExpireTime = timestamppb.New(*e.Expire)
	}
	if rest, ok := strings.CutPrefix(req.GetKey(), auth.APIKeyPrefix); ok {
		env, _, _ := strings.Cut(rest, "_")
		resp.Environment = envFromName(env)
	}
	return resp, nil
}

// resolveTenant returns the id of a tenant given by id or slug, or "" if none exists.
func (s *Service) resolveTenant(ctx context.Context, ref string) (string, error) {
	var (
		row sqlc.IdentityTenant
		err error
	)
	if id, perr := uuid.Parse(ref); perr == nil {
		row, err = s.store.Global().GetTenant(ctx, id)
	} else {
		row, err = s.store.Global().GetTenantBySlug(ctx, ref)
	}
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", nil
		}
		return "", apierr.Internal(fmt.Errorf("resolve tenant: %w", err))
	}
	return row.ID.String(), nil
}

// forgetKey drops a changed key from the caches: this process at once, Redis now,
// other processes when the event the change wrote reaches them over the bus.
func (s *Service) forgetKey(ctx context.Context, row sqlc.IdentityApiKey) {
	if s.keyCache == nil {
		return
	}
	s.keyCache.evict(row.ID.String(), time.Now())
	s.keyCache.evictRemote(ctx, row.KeyHash)
}

// touchAPIKey records a use of a key, off the request path.
func (s *Service) touchAPIKey(tenantID, keyID string) {
	tid, err1 := uuid.Parse(tenantID)
	kid, err2 := uuid.Parse(keyID)
	if err1 != nil || err2 != nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.store.InTenant(ctx, tid, func(tx *store.Tx) error { return tx.TouchAPIKey(ctx, kid) })
		if err != nil {
			s.logger.Debug("record api key use", "api_key_id", keyID, "err", err)
		}
	}()
}

// emit writes one event about a resource to the outbox of tx.
func (s *Service) emit(ctx context.Context, tx *store.Tx, tenant uuid.UUID, eventType, subject string, data proto.Message) error {
	ev, err := event(tenant, eventType, subject, data)
	if err != nil {
		return err
	}
	if err := tx.Emit(ctx, ev); err != nil {
		return fmt.Errorf("emit %s: %w", eventType, err)
	}
	return nil
}
