package identity

import (
	"context"
	"errors"
	"slices"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	envelope "github.com/manushya-ai/manushya/pkg/keyring"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

func (s *erasureServer) EraseTenant(ctx context.Context, req *identityv1.EraseTenantRequest) (*identityv1.EraseTenantResponse, error) {
	own, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	if id == own {
		// The operator's credential lives in its own tenant: erasing it would
		// leave nobody to read the receipt.
		return nil, apierr.FailedPrecondition("the tenant of the calling credential cannot erase itself")
	}
	rec, err := s.svc.EraseTenant(ctx, id, requester(p), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &identityv1.EraseTenantResponse{Receipt: rec}, nil
}

// EraseTenant erases a whole tenant: in one transaction every identity is purged
// as in EraseIdentity (sessions revoked, API keys dropped from the caches), the
// tenant row goes with what remains of its rows here (SSO providers, invitations,
// idempotency keys), the receipt is written and tenant.erased announced; then the
// tenant's data keys, its identities' included, are destroyed. The receipt keeps
// the erased tenant's id without a reference to it, so it outlives the tenant;
// operators read it with GetErasureReceipt. Erasing it again returns the receipt.
func (s *Service) EraseTenant(ctx context.Context, tenant uuid.UUID, requestedBy, reason string) (*identityv1.ErasureReceipt, error) {
	var (
		row sqlc.IdentityErasure
		f   fallout
	)
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		prev, err := tx.GetErasureOfSubject(ctx, sqlc.GetErasureOfSubjectParams{SubjectKind: subjectTenant, SubjectID: tenant})
		if err == nil {
			row = prev
			return nil
		}
		if err := store.MapErr(err); !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// The lock holds back changes to the tenant while it goes.
		if _, err := tx.GetTenantForUpdate(ctx, tenant); err != nil {
			if err := store.MapErr(err); errors.Is(err, store.ErrNotFound) {
				return apierr.NotFound("tenant", tenant.String())
			}
			return err
		}
		n, err := tx.CountTenantErasable(ctx)
		if err != nil {
			return err
		}
		ids, err := tx.ListTenantIdentityIDs(ctx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			_, item, err := s.removeIdentity(ctx, tx, tenant, id, true, true)
			if err != nil {
				return err
			}
			f.add(item)
		}
		if _, err := tx.DeleteTenant(ctx, tenant); err != nil {
			return err
		}
		c := func(kind string, count int64) erasedCount {
			return erasedCount{Service: erasure.ServiceIdentity, Kind: kind, Count: count}
		}
		counts := []erasedCount{
			c("tenants", 1), c("identities", int64(len(ids))), c("sessions", n.Sessions), c("api_keys", n.ApiKeys),
			c("mfa_factors", n.MfaFactors), c("sso_providers", n.SsoProviders), c("invitations", n.Invitations),
		}
		row, err = s.createReceipt(ctx, tx, tenant, subjectTenant, tenant, requestedBy, reason, counts, s.erasureParties())
		if err != nil {
			return err
		}
		ev, err := bus.NewEvent(tenant.String(), erasure.EventTenantErased, EventSource, tenant.String(),
			erasure.Erased{ErasureID: row.ID.String(), TenantID: tenant.String()})
		if err != nil {
			return err
		}
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		return nil, err
	}
	s.settle(ctx, &f)
	if slices.Contains(row.PendingServices, erasure.ServiceKeyring) {
		if row, err = s.destroyKeys(ctx, tenant, row, envelope.Tenant(tenant)); err != nil {
			return nil, err
		}
	}
	return receiptToProto(row)
}

// tenantReceipt reads a tenant erasure's receipt for an operator, outside any
// tenant: the erased tenant is gone, and with it any other way in.
func (s *Service) tenantReceipt(ctx context.Context, id uuid.UUID) (*identityv1.ErasureReceipt, error) {
	var rec *identityv1.ErasureReceipt
	err := s.store.InGlobal(ctx, func(tx *store.Tx) error {
		row, err := tx.GetTenantErasure(ctx, id)
		if err != nil {
			return err
		}
		rec, err = receiptToProto(row)
		return err
	})
	return rec, err
}
