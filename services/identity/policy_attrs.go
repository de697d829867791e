package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// ActsForClaim is the claim naming the identities an identity (usually an agent)
// acts for: one identity id or a list. Policies see it as
// input.principal.acts_for, and may grant on it ("an agent may read the memories
// of the identity it acts for"), so only tenant admins set or change it.
const ActsForClaim = "acts_for"

// checkActsFor refuses a change of the acts_for claim by anyone but a tenant
// admin; cur is the identity's stored claims (nil on create).
func checkActsFor(p *auth.Principal, cur []byte, next *structpb.Struct) error {
	if p == nil || isAdmin(p) || next == nil { // nil: the system itself (bootstrap)
		return nil
	}
	v, ok := next.GetFields()[ActsForClaim]
	if !ok {
		return nil
	}
	var current map[string]any
	if len(cur) > 0 {
		_ = json.Unmarshal(cur, &current)
	}
	if old, had := current[ActsForClaim]; had && reflect.DeepEqual(old, v.AsInterface()) {
		return nil // sending back the current value is not a change
	}
	return apierr.PermissionDenied("claims.%s: only tenant admins set whom an identity acts for", ActsForClaim)
}

// PrincipalClaims returns a loader of an identity's claims for the policy engine
// (policyengine.AuthorizerConfig.PrincipalClaims), reading the identity schema
// through pool in the tenant's scope. An identity that does not exist (or is
// deleted) has no claims.
func PrincipalClaims(pool *pgxpool.Pool) func(ctx context.Context, tenantID, identityID string) (map[string]any, error) {
	st := store.New(pool)
	return func(ctx context.Context, tenantID, identityID string) (map[string]any, error) {
		tenant, err := uuid.Parse(tenantID)
		if err != nil {
			return nil, fmt.Errorf("tenant id: %w", err)
		}
		id, err := uuid.Parse(identityID)
		if err != nil {
			return nil, nil //nolint:nilnil // not an identity: no claims
		}
		var row sqlc.IdentityIdentity
		err = st.InTenant(ctx, tenant, func(tx *store.Tx) error {
			row, err = tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: id})
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil //nolint:nilnil // no identity: no claims
		}
		if err != nil {
			return nil, err
		}
		var claims map[string]any
		if err := json.Unmarshal(row.Claims, &claims); err != nil {
			return nil, fmt.Errorf("identity %s claims: %w", id, err)
		}
		return claims, nil
	}
}

// identityResource is an identity as policies see it in input.resource; an
// identity owns itself.
func identityResource(row sqlc.IdentityIdentity) authz.Resource {
	var claims map[string]any
	_ = json.Unmarshal(row.Claims, &claims)
	return authz.Resource{
		Type: "identity", ID: row.ID.String(), OwnerID: row.ID.String(), TenantID: row.TenantID.String(),
		Attributes: map[string]any{
			"external_id": row.ExternalID, "kind": row.Kind, "role": row.Role, "roles": anyStrings(row.Roles),
			"claims": claims, "is_active": row.IsActive,
		},
	}
}

func anyStrings(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// checkIdentityPolicy decides the request's action on the identity row when some
// tenant policy reads identities' attributes; tenants without one pay nothing.
// A denial is PERMISSION_DENIED, or notFound when reading (so it does not reveal
// the identity).
func checkIdentityPolicy(ctx context.Context, row sqlc.IdentityIdentity, notFound bool) error {
	g := authz.GuardFrom(ctx)
	per, err := g.PerResource(ctx)
	if err != nil || !per {
		return err
	}
	err = g.Check(ctx, identityResource(row))
	var ae *apierr.Error
	if notFound && errors.As(err, &ae) && ae.Code == codes.PermissionDenied {
		return apierr.NotFound("identity", row.ID.String())
	}
	return err
}
