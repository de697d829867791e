package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/pagination"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// tenantServer implements TenantService.
type tenantServer struct {
	identityv1.UnimplementedTenantServiceServer
	svc *Service
}

func (s *tenantServer) CreateTenant(ctx context.Context, req *identityv1.CreateTenantRequest) (*identityv1.CreateTenantResponse, error) {
	t, err := s.svc.CreateTenant(ctx, req.GetSlug(), req.GetName(), req.GetSettings())
	if err != nil {
		return nil, err
	}
	return &identityv1.CreateTenantResponse{Tenant: t}, nil
}

func (s *tenantServer) GetTenant(ctx context.Context, req *identityv1.GetTenantRequest) (*identityv1.GetTenantResponse, error) {
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	row, err := s.svc.store.Global().GetTenant(ctx, id)
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, apierr.NotFound("tenant", req.GetId())
		}
		return nil, err
	}
	t, err := tenantToProto(row)
	if err != nil {
		return nil, err
	}
	return &identityv1.GetTenantResponse{Tenant: t}, nil
}

func (s *tenantServer) ListTenants(ctx context.Context, req *identityv1.ListTenantsRequest) (*identityv1.ListTenantsResponse, error) {
	fp := pagination.Fingerprint("tenants")
	after, err := pagination.DecodeUUID(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListTenantsParams{PageLimit: pagination.Size(req.GetPageSize()) + 1, AfterID: after}
	rows, err := s.svc.store.Global().ListTenants(ctx, params)
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListTenantsResponse{}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(rows[len(rows)-1].ID.String(), fp)
	}
	for _, r := range rows {
		t, err := tenantToProto(r)
		if err != nil {
			return nil, err
		}
		resp.Tenants = append(resp.Tenants, t)
	}
	return resp, nil
}

// CreateTenant stores a tenant with its settings (defaults for what is left out).
func (s *Service) CreateTenant(ctx context.Context, slug, name string, settings *identityv1.TenantSettings) (*identityv1.Tenant, error) {
	if settings == nil {
		settings = &identityv1.TenantSettings{}
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(settings)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	row, err := s.store.Global().CreateTenant(ctx, sqlc.CreateTenantParams{ID: newID(), Slug: slug, Name: name, Settings: raw})
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return nil, apierr.AlreadyExists("a tenant with slug %q exists", slug)
		}
		return nil, err
	}
	return tenantToProto(row)
}

// identityServer implements IdentityService.
type identityServer struct {
	identityv1.UnimplementedIdentityServiceServer
	svc *Service
}

func (s *identityServer) CreateIdentity(ctx context.Context, req *identityv1.CreateIdentityRequest) (*identityv1.CreateIdentityResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var resp *identityv1.CreateIdentityResponse
	var issued *issuedTokens
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		// The stored idempotent answer carries "[redacted]" for sensitive claims;
		// their values are opened into the answer below. The audit record redacts
		// them in a replay too.
		names, err := sensitiveNamesOf(ctx, tx, tenant)
		if err != nil {
			return err
		}
		redactAudit(ctx, names)
		resp, err = idempotent(ctx, tx, tenant, "CreateIdentity", req.GetIdempotencyKey(), req, &identityv1.CreateIdentityResponse{},
			func() (*identityv1.CreateIdentityResponse, error) {
				ident, err := s.svc.createIdentity(ctx, tx, tenant, p, req)
				if err != nil {
					return nil, err
				}
				return &identityv1.CreateIdentityResponse{Identity: ident}, nil
			})
		if err != nil {
			return err
		}
		if err := s.svc.fillSensitiveClaims(ctx, tx, resp.GetIdentity()); err != nil {
			return err
		}
		if !req.GetIssueToken() {
			return nil
		}
		// Tokens are issued after the idempotent part, so they are never stored with
		// the replayable response: a retry gets the same identity and a new session.
		issued, err = s.svc.issueTokens(ctx, tx, resp.GetIdentity().GetId())
		return err
	})
	if err != nil {
		return nil, err
	}
	if issued != nil {
		resp.Tokens = s.svc.finishIssue(issued)
	}
	return resp, nil
}

// createIdentity inserts one identity and its identity.created event in tx.
func (s *Service) createIdentity(ctx context.Context, tx *store.Tx, tenant uuid.UUID, p *auth.Principal, req *identityv1.CreateIdentityRequest) (*identityv1.Identity, error) {
	role := req.GetRole()
	if role == "" {
		role = auth.RoleUser
	}
	roles := req.GetRoles()
	if roles == nil {
		roles = []string{}
	}
	if err := checkGrant(p, allRoles(role, roles)...); err != nil {
		return nil, err
	}
	if err := checkActsFor(p, nil, req.GetClaims()); err != nil {
		return nil, err
	}
	claims, err := claimsJSON(req.GetClaims())
	if err != nil {
		return nil, apierr.Field("claims", "cannot be stored: %v", err)
	}
	names, err := sensitiveNamesOf(ctx, tx, tenant)
	if err != nil {
		return nil, err
	}
	redactAudit(ctx, names)
	claims, sensitive, err := splitClaims(claims, names)
	if err != nil {
		return nil, err
	}
	row, err := tx.CreateIdentity(ctx, sqlc.CreateIdentityParams{
		ID: newID(), TenantID: tenant, ExternalID: req.GetExternalId(), Kind: kindNames[req.GetKind()],
		Role: role, Roles: roles, Claims: claims,
	})
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return nil, apierr.AlreadyExists("an identity with external_id %q exists", req.GetExternalId())
		}
		return nil, err
	}
	if err := s.writeSensitiveClaims(ctx, tx, tenant, row.ID, sensitive, true); err != nil {
		return nil, err
	}
	ident, err := identityToProto(row)
	if err != nil {
		return nil, err
	}
	ident = s.redactedForEvent(ctx, tx, ident)
	ev, err := event(tenant, "identity.created", ident.GetId(), ident)
	if err != nil {
		return nil, err
	}
	if err := tx.Emit(ctx, ev); err != nil {
		return nil, fmt.Errorf("emit identity.created: %w", err)
	}
	return ident, nil
}

func (s *identityServer) GetIdentity(ctx context.Context, req *identityv1.GetIdentityRequest) (*identityv1.GetIdentityResponse, error) {
	ident, err := s.svc.getIdentity(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	return &identityv1.GetIdentityResponse{Identity: ident}, nil
}

func (s *identityServer) GetMe(ctx context.Context, _ *identityv1.GetMeRequest) (*identityv1.GetMeResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, apierr.PermissionDenied("no caller")
	}
	ident, err := s.svc.getIdentity(ctx, "id", p.IdentityID)
	if err != nil {
		return nil, err
	}
	return &identityv1.GetMeResponse{Identity: ident}, nil
}

func (s *Service) getIdentity(ctx context.Context, field, rawID string) (*identityv1.Identity, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID(field, rawID)
	if err != nil {
		return nil, err
	}
	var ident *identityv1.Identity
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: id})
		if err != nil {
			return err
		}
		if err := checkIdentityPolicy(ctx, row, true); err != nil {
			return err
		}
		if ident, err = identityToProto(row); err != nil {
			return err
		}
		return s.fillSensitiveClaims(ctx, tx, ident)
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, apierr.NotFound("identity", rawID)
		}
		return nil, err
	}
	return ident, nil
}

func (s *identityServer) ListIdentities(ctx context.Context, req *identityv1.ListIdentitiesRequest) (*identityv1.ListIdentitiesResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListIdentitiesParams{
		PageLimit:      pagination.Size(req.GetPageSize()) + 1,
		IncludeDeleted: req.GetIncludeDeleted(),
		Role:           optional(req.GetRole()),
		ExternalID:     optional(req.GetExternalId()),
	}
	if req.GetKind() != identityv1.IdentityKind_IDENTITY_KIND_UNSPECIFIED {
		params.Kind = optional(kindNames[req.GetKind()])
	}
	if req.GetCreatedAfter() != nil {
		t := req.GetCreatedAfter().AsTime()
		params.CreatedAfter = &t
	}
	if req.GetCreatedBefore() != nil {
		t := req.GetCreatedBefore().AsTime()
		params.CreatedBefore = &t
	}
	fp := pagination.Fingerprint("identities", params.Role, params.Kind, params.ExternalID, params.CreatedAfter, params.CreatedBefore, params.IncludeDeleted)
	cursor, err := pagination.DecodeUUID(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params.BeforeID = cursor
	var rows []sqlc.IdentityIdentity
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListIdentities(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListIdentitiesResponse{}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(rows[len(rows)-1].ID.String(), fp)
	}
	for _, r := range rows {
		ident, err := identityToProto(r)
		if err != nil {
			return nil, err
		}
		resp.Identities = append(resp.Identities, ident)
	}
	if err := s.svc.fillSensitive(ctx, tenant, resp.GetIdentities()...); err != nil {
		return nil, err
	}
	return resp, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
