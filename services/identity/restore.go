package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
)

// emitPurged writes identity.purged for id in tx: every purge but an erasure's
// (which announces identity.erased) writes it, after identity.deleted.
func (s *Service) emitPurged(ctx context.Context, tx *store.Tx, tenant, id uuid.UUID) error {
	ev, err := bus.NewEvent(tenant.String(), erasure.EventIdentityPurged, EventSource, id.String(), erasure.Purged{IdentityID: id.String()})
	if err != nil {
		return err
	}
	if err := tx.Emit(ctx, ev); err != nil {
		return fmt.Errorf("emit %s: %w", erasure.EventIdentityPurged, err)
	}
	return nil
}

// RestoreIdentity brings a soft-deleted identity back within the tenant's restore
// window. What the deletion revoked stays revoked (its sessions and API keys): a
// restore must not revive credentials that may have leaked meanwhile, so the admin
// issues new ones.
func (s *identityServer) RestoreIdentity(ctx context.Context, req *identityv1.RestoreIdentityRequest) (*identityv1.RestoreIdentityResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	// A deleted identity cannot call, so only someone else restores it; a tenant
	// policy granting identity.restore to a non-admin does not go further than
	// DeleteIdentity does for other identities.
	if !isAdmin(p) {
		return nil, apierr.PermissionDenied("only tenant admins restore identities")
	}
	var ident *identityv1.Identity
	var f fallout
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := tx.LockIdentity(ctx, id)
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return apierr.NotFound("identity", req.GetId())
			}
			return err
		}
		if cur.DeleteTime == nil {
			return apierr.FailedPrecondition("identity %s is not deleted", id)
		}
		settings, err := settingsOf(ctx, tx, tenant)
		if err != nil {
			return err
		}
		days := retentionDays(settings)
		if end := cur.DeleteTime.AddDate(0, 0, days); !time.Now().Before(end) {
			return apierr.FailedPrecondition("identity %s was deleted on %s and the tenant's restore window of %d days (settings.deleted_identity_retention_days) ended on %s",
				id, cur.DeleteTime.UTC().Format(time.RFC3339), days, end.UTC().Format(time.RFC3339))
		}
		row, err := tx.RestoreIdentity(ctx, id)
		if err := store.MapErr(err); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return apierr.AlreadyExists("a live identity with external_id %q exists; rename it before restoring this one", cur.ExternalID)
			}
			return fmt.Errorf("restore identity %s: %w", id, err)
		}
		if ident, err = identityToProto(row); err != nil {
			return err
		}
		if err := s.svc.emit(ctx, tx, tenant, "identity.restored", ident.GetId(), s.svc.redactedForEvent(ctx, tx, ident)); err != nil {
			return err
		}
		if err := s.svc.fillSensitiveClaims(ctx, tx, ident); err != nil {
			return err
		}
		// A verification cached while the identity was deleted would refuse its
		// (new) keys until it aged out.
		f, err = credentialsOf(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.svc.settle(ctx, &f)
	return &identityv1.RestoreIdentityResponse{Identity: ident}, nil
}
