package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// BootstrapResult is what a first start creates: a tenant, its admin identity and an
// admin API key that is also the platform operator's.
type BootstrapResult struct {
	TenantID   string `json:"tenant_id"`
	TenantSlug string `json:"tenant_slug"`
	IdentityID string `json:"identity_id"`
	APIKey     string `json:"api_key"`
}

// ErrAlreadyBootstrapped is returned when the tenant to bootstrap exists already.
var ErrAlreadyBootstrapped = errors.New("tenant already exists")

// Bootstrap creates a tenant with an admin identity and an API key carrying every
// scope plus the operator scope. It is how a new deployment gets its first credential;
// the key is returned once and only its hash is stored.
func (s *Service) Bootstrap(ctx context.Context, slug, name string) (*BootstrapResult, error) {
	tenant, err := s.CreateTenant(ctx, slug, name, nil)
	if err != nil {
		if apierr.ReasonOf(err) == errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS {
			return nil, ErrAlreadyBootstrapped
		}
		return nil, fmt.Errorf("create tenant %s: %w", slug, err)
	}
	tenantID, err := parseID("tenant_id", tenant.GetId())
	if err != nil {
		return nil, err
	}
	res := &BootstrapResult{TenantID: tenant.GetId(), TenantSlug: slug}
	err = s.store.InTenant(ctx, tenantID, func(tx *store.Tx) error {
		ident, err := s.createIdentity(ctx, tx, tenantID, nil, &identityv1.CreateIdentityRequest{
			ExternalId: "admin", Role: auth.RoleAdmin, Kind: identityv1.IdentityKind_IDENTITY_KIND_SERVICE,
		})
		if err != nil {
			return err
		}
		res.IdentityID = ident.GetId()
		identityID, err := parseID("identity_id", ident.GetId())
		if err != nil {
			return err
		}
		res.APIKey, _, err = s.issueAPIKey(ctx, tx, tenantID, identityID, "bootstrap admin", []string{"*", auth.ScopeOperator}, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap tenant %s: %w", slug, err)
	}
	return res, nil
}

// ReissueBootstrapKey issues a new operator key for the admin identity that Bootstrap
// created in tenant slug. `manushya dev` uses it when its saved key file is gone but
// the database still has the tenant, so a developer is never locked out.
func (s *Service) ReissueBootstrapKey(ctx context.Context, slug string) (*BootstrapResult, error) {
	tenant, err := s.store.Global().GetTenantBySlug(ctx, slug)
	if err != nil {
		return nil, fmt.Errorf("find tenant %s: %w", slug, store.MapErr(err))
	}
	external := "admin"
	res := &BootstrapResult{TenantID: tenant.ID.String(), TenantSlug: slug}
	err = s.store.InTenant(ctx, tenant.ID, func(tx *store.Tx) error {
		rows, err := tx.ListIdentities(ctx, sqlc.ListIdentitiesParams{ExternalID: &external, PageLimit: 1})
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return fmt.Errorf("tenant %s has no admin identity", slug)
		}
		res.IdentityID = rows[0].ID.String()
		res.APIKey, _, err = s.issueAPIKey(ctx, tx, tenant.ID, rows[0].ID, "bootstrap admin (reissued)", []string{"*", auth.ScopeOperator}, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
