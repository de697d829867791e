package usage

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// erasureConsumerName is the durable consumer of identity.erased and tenant.erased.
const erasureConsumerName = "usage-erasure"

// identityTables hold usage per identity; an identity's erasure deletes its rows
// there. The tenant's totals per type and day (rollup_type_daily) carry no
// identity and stay, so invoices and trends still add up.
var identityTables = []struct{ table, kind string }{
	{"usage.events", "usage_events"},
	{"usage.rollup_minute", "usage_rollups"},
	{"usage.rollup_daily", "usage_rollups"},
	{"usage.rollup_span", "usage_rollups"},
	{"usage.identity_activity", "usage_rollups"},
}

// tenantTables are every tenant-scoped table of the schema: a tenant's erasure
// empties them of its rows.
var tenantTables = []struct{ table, kind string }{
	{"usage.events", "usage_events"},
	{"usage.event_keys", "usage_rollups"},
	{"usage.rollup_minute", "usage_rollups"},
	{"usage.rollup_daily", "usage_rollups"},
	{"usage.rollup_type_daily", "usage_rollups"},
	{"usage.rollup_span", "usage_rollups"},
	{"usage.identity_activity", "usage_rollups"},
	{"usage.quotas", "quotas"},
	{"usage.quota_notices", "quotas"},
	{"usage.rate_limits", "rate_limits"},
}

// consumeErasures removes the usage details of erased identities and tenants
// until ctx ends (see pkg/erasure).
func (s *Service) consumeErasures(ctx context.Context, b *bus.Bus) error {
	return erasure.ConsumeErased(ctx, b, erasureConsumerName, s.logger, func(ctx context.Context, r erasure.Request) error {
		return s.Erase(ctx, r.Tenant, r.ErasureID, r.Identity)
	})
}

// Erase deletes the usage details of identity in tenant (of the whole tenant when
// identity is nil) and reports the counts with erasure.progress, all in one
// transaction. Running it again for the same erasure reports nothing twice.
func (s *Service) Erase(ctx context.Context, tenant, erasureID uuid.UUID, identity *uuid.UUID) error {
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		raw := tx.Raw()
		// Waits for the batches being stored; later ones see this erasure and leave
		// out the erased identity's events (store.IngestLock).
		if _, err := raw.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, store.IngestLock); err != nil {
			return err
		}
		var reported bool
		if err := raw.QueryRow(ctx, `INSERT INTO usage.erasures (erasure_id, tenant_id, identity_id) VALUES ($1, $2, $3)
			ON CONFLICT (erasure_id) DO UPDATE SET erasure_id = EXCLUDED.erasure_id
			RETURNING report_time IS NOT NULL`, erasureID, tenant, identity).Scan(&reported); err != nil {
			return fmt.Errorf("erasure row: %w", err)
		}
		if reported {
			return nil
		}
		counts, err := eraseRows(ctx, raw, tenant, identity)
		if err != nil {
			return err
		}
		ev, err := erasure.ProgressEvent(tenant.String(), EventSource, erasure.ServiceUsage, erasureID.String(), counts)
		if err != nil {
			return err
		}
		if err := tx.Emit(ctx, ev); err != nil {
			return err
		}
		_, err = raw.Exec(ctx, `UPDATE usage.erasures SET report_time = now() WHERE erasure_id = $1`, erasureID)
		return err
	})
	if err != nil {
		return fmt.Errorf("erase usage (erasure %s): %w", erasureID, err)
	}
	if s.summaries != nil {
		s.summaries.invalidate(tenant.String())
	}
	return nil
}

// eraseRows deletes the rows and counts them by kind, in the order of the tables.
func eraseRows(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, identity *uuid.UUID) ([]erasure.Count, error) {
	tables := tenantTables
	where := "tenant_id = $1"
	args := []any{tenant}
	if identity != nil {
		tables = identityTables
		where += " AND identity_id = $2"
		args = append(args, *identity)
	}
	var counts []erasure.Count
	for _, t := range tables {
		tag, err := tx.Exec(ctx, "DELETE FROM "+t.table+" WHERE "+where, args...)
		if err != nil {
			return nil, fmt.Errorf("delete from %s: %w", t.table, err)
		}
		if n := len(counts); n > 0 && counts[n-1].Kind == t.kind {
			counts[n-1].Count += tag.RowsAffected()
		} else {
			counts = append(counts, erasure.Count{Kind: t.kind, Count: tag.RowsAffected()})
		}
	}
	return counts, nil
}
