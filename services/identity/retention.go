package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

const (
	// defaultRetentionDays is how long a soft-deleted identity is kept when its
	// tenant sets no deleted_identity_retention_days (0).
	defaultRetentionDays = 30
	// maxRetentionDays is the longest a tenant may keep them (the proto says so too).
	maxRetentionDays = 3650
	// defaultRetentionSweepInterval is how often the sweeper runs unless the
	// configuration says otherwise: retention is counted in days, so hourly is
	// prompt enough and costs one indexed query per tenant.
	defaultRetentionSweepInterval = time.Hour
	// retentionBatch bounds the identities purged in one transaction, so a backlog
	// (a tenant shortening its window) never holds long locks.
	retentionBatch = 100
)

// retentionDays is the tenant's restore window for deleted identities in days.
func retentionDays(settings *identityv1.TenantSettings) int {
	if d := settings.GetDeletedIdentityRetentionDays(); d > 0 {
		return int(d)
	}
	return defaultRetentionDays
}

// runRetention purges due identities every interval until ctx ends, and once
// shortly after start, so frequent restarts do not starve it of ticks.
func (s *Service) runRetention(ctx context.Context, every time.Duration) error {
	first := time.NewTimer(time.Minute)
	defer first.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-first.C:
		case <-tick.C:
		}
		if _, err := s.PurgeDeletedIdentities(ctx); err != nil && ctx.Err() == nil {
			s.logger.ErrorContext(ctx, "retention sweep failed", "err", err)
		}
	}
}

// PurgeDeletedIdentities is the retention sweeper's pass: tenant by tenant, it
// purges the identities soft-deleted longer ago than the tenant's
// deleted_identity_retention_days, through the same path as DeleteIdentity with
// hard (their sessions, API keys, credentials and sealed claims go with them, and
// identity.deleted and identity.purged are written to the outbox for each; the
// memory service deletes their memories on the latter). It returns how many it
// purged. A tenant that fails is logged and skipped, so it holds back no other;
// the first such error is returned once every tenant had its turn.
func (s *Service) PurgeDeletedIdentities(ctx context.Context) (int, error) {
	g := s.store.Global()
	now := time.Now()
	var (
		total    int
		firstErr error
		after    *uuid.UUID
	)
	for {
		tenants, err := g.ListTenants(ctx, sqlc.ListTenantsParams{AfterID: after, PageLimit: 500})
		if err != nil {
			return total, fmt.Errorf("retention: list tenants: %w", err)
		}
		for _, t := range tenants {
			n, err := s.purgeTenantDeleted(ctx, t, now)
			total += n
			if n > 0 {
				s.logger.InfoContext(ctx, "retention: purged soft-deleted identities", "tenant", t.ID, "identities", n)
			}
			if err != nil {
				if ctx.Err() != nil {
					return total, ctx.Err()
				}
				s.logger.WarnContext(ctx, "retention: purge failed", "tenant", t.ID, "err", err)
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		if len(tenants) < 500 {
			return total, firstErr
		}
		after = &tenants[len(tenants)-1].ID
	}
}

// purgeTenantDeleted purges one tenant's due identities in batches, one
// transaction each, and returns how many it purged.
func (s *Service) purgeTenantDeleted(ctx context.Context, t sqlc.IdentityTenant, now time.Time) (int, error) {
	settings := &identityv1.TenantSettings{}
	if err := protojson.Unmarshal(t.Settings, settings); err != nil {
		return 0, fmt.Errorf("decode settings of tenant %s: %w", t.ID, err)
	}
	cutoff := now.AddDate(0, 0, -retentionDays(settings))
	var total int
	for {
		var (
			listed int
			purged int
			f      fallout
		)
		err := s.store.InTenant(ctx, t.ID, func(tx *store.Tx) error {
			ids, err := tx.ListExpiredDeletedIdentities(ctx, sqlc.ListExpiredDeletedIdentitiesParams{
				TenantID: t.ID, Cutoff: cutoff, PageLimit: retentionBatch,
			})
			if err != nil {
				return fmt.Errorf("list expired identities: %w", err)
			}
			listed = len(ids)
			for _, id := range ids {
				o, done, err := s.purgeIdentity(ctx, tx, t.ID, id, cutoff)
				if err != nil {
					return err
				}
				if done {
					f.add(o)
					purged++
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		s.settle(ctx, &f)
		total += purged
		if listed < retentionBatch {
			return total, nil
		}
	}
}

// purgeIdentity hard-deletes one soft-deleted identity in tx as DeleteIdentity
// with hard does, identity.deleted and identity.purged included; the sweeper acts
// for no caller, so no permission applies. It first locks the row and checks again that it is
// still deleted and due: it may have been purged meanwhile (another replica's
// sweeper, an admin, an erasure), and then it reports done false.
func (s *Service) purgeIdentity(ctx context.Context, tx *store.Tx, tenant, id uuid.UUID, cutoff time.Time) (fallout, bool, error) {
	cur, err := tx.LockIdentity(ctx, id)
	if err := store.MapErr(err); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fallout{}, false, nil
		}
		return fallout{}, false, fmt.Errorf("lock identity %s: %w", id, err)
	}
	if cur.DeleteTime == nil || cur.DeleteTime.After(cutoff) {
		return fallout{}, false, nil
	}
	row, f, err := s.removeIdentity(ctx, tx, tenant, id, true, false)
	if err != nil {
		return fallout{}, false, err
	}
	ident, err := identityToProto(row)
	if err != nil {
		return fallout{}, false, err
	}
	if err := s.emit(ctx, tx, tenant, "identity.deleted", ident.GetId(), ident); err != nil {
		return fallout{}, false, err
	}
	if err := s.emitPurged(ctx, tx, tenant, id); err != nil {
		return fallout{}, false, err
	}
	return f, true, nil
}
