package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

// Event is one validated usage event to store.
type Event struct {
	Tenant     uuid.UUID
	ID         string
	Source     string
	Type       string
	Quantity   int64
	IdentityID uuid.UUID // uuid.Nil: billed to no identity
	Time       time.Time
	Properties []byte // a JSON object
	CreateTime time.Time
}

// ingestSQL stores one tenant's batch: dedup keys first (only events whose key is
// new go on), then the raw events, then the rollups (minute, daily, and the ones the
// summary reads: per type and day, identity spans, identity activity), each event
// added to the buckets of its own time, in one statement. Rollup rows are upserted
// in key order so concurrent batches lock them in the same order.
const ingestSQL = `WITH input AS (
  SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::uuid[], $7::timestamptz[], $8::jsonb[])
    AS t(id, source, type, quantity, identity_id, event_time, properties)
  -- Usage of an erased identity or tenant, delivered after its erasure, is not
  -- stored: it would bring the erased details back (IngestLock).
  WHERE NOT EXISTS (SELECT 1 FROM usage.erasures e
                    WHERE e.tenant_id = $1 AND (e.identity_id IS NULL OR e.identity_id = t.identity_id))
), fresh AS (
  INSERT INTO usage.event_keys (tenant_id, source, id)
  SELECT $1, source, id FROM input ORDER BY source, id
  ON CONFLICT DO NOTHING
  RETURNING source, id
), ins AS (
  INSERT INTO usage.events (tenant_id, id, source, type, quantity, identity_id, event_time, properties)
  SELECT $1, i.id, i.source, i.type, i.quantity, i.identity_id, i.event_time, i.properties
  FROM input i JOIN fresh f ON f.source = i.source AND f.id = i.id
  RETURNING source, id, type, quantity, identity_id, event_time
), minute AS (
  INSERT INTO usage.rollup_minute AS r (tenant_id, bucket, type, identity_id, quantity, event_count)
  SELECT $1, date_trunc('minute', event_time, 'UTC'), type, identity_id, sum(quantity), count(*)
  FROM ins GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
  ON CONFLICT (tenant_id, bucket, type, identity_id) DO UPDATE
  SET quantity = r.quantity + excluded.quantity, event_count = r.event_count + excluded.event_count
), daily AS (
  INSERT INTO usage.rollup_daily AS r (tenant_id, day, type, identity_id, quantity, event_count)
  SELECT $1, (event_time AT TIME ZONE 'UTC')::date, type, identity_id, sum(quantity), count(*)
  FROM ins GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
  ON CONFLICT (tenant_id, day, type, identity_id) DO UPDATE
  SET quantity = r.quantity + excluded.quantity, event_count = r.event_count + excluded.event_count, update_time = now()
), type_daily AS (
  INSERT INTO usage.rollup_type_daily AS r (tenant_id, day, type, quantity, event_count)
  SELECT $1, (event_time AT TIME ZONE 'UTC')::date, type, sum(quantity), count(*)
  FROM ins GROUP BY 2, 3 ORDER BY 2, 3
  ON CONFLICT (tenant_id, day, type) DO UPDATE
  SET quantity = r.quantity + excluded.quantity, event_count = r.event_count + excluded.event_count, update_time = now()
), span AS (
  INSERT INTO usage.rollup_span AS r (tenant_id, level, start_day, type, identity_id, quantity, event_count)
  SELECT $1, l.level, d.day - ((d.day - date '1970-01-01') % (1 << l.level)), d.type, d.identity_id, sum(d.quantity), count(*)
  FROM (SELECT (event_time AT TIME ZONE 'UTC')::date AS day, type, identity_id, quantity FROM ins
        WHERE identity_id <> '00000000-0000-0000-0000-000000000000') d
  CROSS JOIN generate_series(1, 8) AS l(level)
  GROUP BY 2, 3, 4, 5 ORDER BY 2, 3, 4, 5
  ON CONFLICT (tenant_id, level, start_day, type, identity_id) DO UPDATE
  SET quantity = r.quantity + excluded.quantity, event_count = r.event_count + excluded.event_count
), activity AS (
  INSERT INTO usage.identity_activity AS r (tenant_id, year, type, identity_id, days)
  SELECT $1, extract(year FROM a.d)::integer, t.type, a.identity_id, bit_or(set_bit(` + zeroDays + `, extract(doy FROM a.d)::integer - 1, 1))
  FROM (SELECT identity_id, type, (event_time AT TIME ZONE 'UTC')::date AS d FROM ins
        WHERE identity_id <> '00000000-0000-0000-0000-000000000000') a
  CROSS JOIN LATERAL (VALUES (a.type), ('')) AS t(type)
  GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
  ON CONFLICT (tenant_id, year, type, identity_id) DO UPDATE
  SET days = r.days | excluded.days
  -- Most batches add days already marked; skip the no-op row versions.
  WHERE r.days | excluded.days <> r.days
)
SELECT source, id FROM ins`

// zeroDays is an empty usage.identity_activity bit string.
const zeroDays = "repeat('0', 366)::bit(366)"

// IngestLock is the advisory lock between storing usage and erasing it: every
// Ingest transaction holds it shared, an erasure takes it exclusively before it
// deletes (services/usage/erasure.go). A batch that began before the erasure
// was recorded in usage.erasures is stored before the erasure deletes; one that
// begins after sees the record and leaves the erased events out.
const IngestLock int64 = 0x75736167_65726173

// Ingest stores events of any tenants in one transaction and reports, per event,
// whether it was new (false: its (tenant, source, id) was recorded before, or
// earlier in the same batch). Deadlocks with concurrent batches are retried.
func (s *Store) Ingest(ctx context.Context, events []Event) ([]bool, error) {
	type key struct {
		tenant     uuid.UUID
		source, id string
	}
	groups := make(map[uuid.UUID][]int)
	var tenants []uuid.UUID
	seen := make(map[key]bool, len(events))
	for i, e := range events {
		k := key{e.Tenant, e.Source, e.ID}
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := groups[e.Tenant]; !ok {
			tenants = append(tenants, e.Tenant)
		}
		groups[e.Tenant] = append(groups[e.Tenant], i)
	}
	// One order of tenants in every transaction, for the same reason as the rollups.
	slices.SortFunc(tenants, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	var fresh []bool
	for attempt := 0; ; attempt++ {
		fresh = make([]bool, len(events))
		// One round trip for the whole batch: each tenant's statement is queued
		// behind the setting that binds it to its tenant.
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var b pgx.Batch
			b.Queue("SELECT pg_advisory_xact_lock_shared($1)", IngestLock)
			wheres := make([]map[[2]string]int, len(tenants))
			for k, t := range tenants {
				b.Queue("SELECT set_config($1, $2, true)", postgres.TenantSetting, t.String())
				args, where := ingestArgs(t, events, groups[t])
				wheres[k] = where
				b.Queue(ingestSQL, args...)
			}
			res := tx.SendBatch(ctx, &b)
			defer func() { _ = res.Close() }()
			if _, err := res.Exec(); err != nil {
				return err
			}
			for k := range tenants {
				if _, err := res.Exec(); err != nil {
					return err
				}
				rows, err := res.Query()
				if err != nil {
					return err
				}
				var src, id string
				_, err = pgx.ForEachRow(rows, []any{&src, &id}, func() error {
					fresh[wheres[k][[2]string{src, id}]] = true
					return nil
				})
				if err != nil {
					return err
				}
			}
			return res.Close()
		})
		if err == nil {
			return fresh, nil
		}
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || (pgErr.Code != "40P01" && pgErr.Code != "40001") || attempt >= 3 {
			return nil, fmt.Errorf("ingest %d usage events: %w", len(events), err)
		}
	}
}

// ingestArgs are the arguments of ingestSQL for the events at idx, and where
// each (source, id) sits in events.
func ingestArgs(tenant uuid.UUID, events []Event, idx []int) ([]any, map[[2]string]int) {
	n := len(idx)
	ids, sources, types := make([]string, n), make([]string, n), make([]string, n)
	qty, idents, times := make([]int64, n), make([]uuid.UUID, n), make([]time.Time, n)
	props := make([]string, n)
	where := make(map[[2]string]int, n)
	for j, i := range idx {
		e := events[i]
		ids[j], sources[j], types[j], qty[j], idents[j], times[j] = e.ID, e.Source, e.Type, e.Quantity, e.IdentityID, e.Time
		props[j] = "{}"
		if len(e.Properties) > 0 {
			props[j] = string(e.Properties)
		}
		where[[2]string{e.Source, e.ID}] = i
	}
	return []any{tenant, ids, sources, types, qty, idents, times, props}, where
}

// EnsurePartitions creates the monthly partitions of raw events from the month of
// from on, months of them; it returns how many it created.
func (s *Store) EnsurePartitions(ctx context.Context, from time.Time, months int) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT usage.ensure_event_partitions($1::date, $2)", from.UTC().Format(time.DateOnly), months).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("ensure usage event partitions: %w", err)
	}
	return n, nil
}

// DropPartitionsBefore drops the partitions of raw events whose whole month is
// before cut and names them.
func (s *Store) DropPartitionsBefore(ctx context.Context, cut time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT usage.drop_event_partitions($1)", cut)
	if err != nil {
		return nil, fmt.Errorf("drop usage event partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("drop usage event partitions: %w", err)
	}
	return names, nil
}

// Prune deletes dedup keys created before keysBefore and minute rollups before
// minutesBefore, in every tenant, and returns how many rows went.
func (s *Store) Prune(ctx context.Context, keysBefore, minutesBefore time.Time) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT usage.prune($1, $2)", keysBefore, minutesBefore).Scan(&n); err != nil {
		return 0, fmt.Errorf("prune usage keys and minute rollups: %w", err)
	}
	return n, nil
}

// EventFilter narrows ListEvents and ExportEvents.
type EventFilter struct {
	Type, Source string
	IdentityID   *uuid.UUID
	Start, End   *time.Time
}

// EventCursor is the keyset position after the last event of a page.
type EventCursor struct {
	Time       time.Time
	Source, ID string
}

// ListEvents returns up to limit events, newest first, after cursor.
func (t *Tx) ListEvents(ctx context.Context, f EventFilter, after *EventCursor, limit int32) ([]Event, error) {
	q := `SELECT tenant_id, id, source, type, quantity, identity_id, event_time, properties, create_time
FROM usage.events
WHERE ($1 = '' OR type = $1) AND ($2 = '' OR source = $2)
  AND ($3::uuid IS NULL OR identity_id = $3)
  AND ($4::timestamptz IS NULL OR event_time >= $4)
  AND ($5::timestamptz IS NULL OR event_time < $5)
  AND ($6::timestamptz IS NULL OR (event_time, source, id) < ($6, $7, $8))
ORDER BY event_time DESC, source DESC, id DESC
LIMIT $9`
	var at *time.Time
	var as, ai string
	if after != nil {
		at, as, ai = &after.Time, after.Source, after.ID
	}
	rows, err := t.tx.Query(ctx, q, f.Type, f.Source, f.IdentityID, f.Start, f.End, at, as, ai, limit)
	if err != nil {
		return nil, fmt.Errorf("list usage events: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		err := r.Scan(&e.Tenant, &e.ID, &e.Source, &e.Type, &e.Quantity, &e.IdentityID, &e.Time, &e.Properties, &e.CreateTime)
		return e, err
	})
}

// Daily is one daily rollup row (IdentityID uuid.Nil when summed over identities
// or billed to none).
type Daily struct {
	Day        time.Time
	Type       string
	IdentityID uuid.UUID
	Quantity   int64
	EventCount int64
	UpdateTime time.Time
}

// DailyFilter narrows ListDaily.
type DailyFilter struct {
	Type          string
	IdentityID    *uuid.UUID
	Start, End    time.Time // days, inclusive
	SumIdentities bool
}

// DailyCursor is the keyset position after the last row of a page.
type DailyCursor struct {
	Day        time.Time
	Type       string
	IdentityID uuid.UUID
}

// ListDaily returns up to limit rollup rows ordered by day, type and identity.
func (t *Tx) ListDaily(ctx context.Context, f DailyFilter, after *DailyCursor, limit int32) ([]Daily, error) {
	identity := "identity_id"
	group := ""
	update := "update_time"
	if f.SumIdentities {
		identity, group, update = "'00000000-0000-0000-0000-000000000000'::uuid", " GROUP BY day, type", "max(update_time)"
	}
	sum := "quantity, event_count"
	if f.SumIdentities {
		sum = "sum(quantity)::bigint, sum(event_count)::bigint"
	}
	q := `SELECT day, type, ` + identity + ` AS identity_id, ` + sum + `, ` + update + `
FROM usage.rollup_daily
WHERE day >= $1 AND day <= $2 AND ($3 = '' OR type = $3) AND ($4::uuid IS NULL OR identity_id = $4)` + group
	if f.SumIdentities && f.IdentityID == nil {
		// Summed over identities: the per-type rollup already holds the sums.
		q = `SELECT day, type, '00000000-0000-0000-0000-000000000000'::uuid AS identity_id, quantity, event_count, update_time
FROM usage.rollup_type_daily
WHERE day >= $1 AND day <= $2 AND ($3 = '' OR type = $3) AND $4::uuid IS NULL`
	}
	q = `SELECT * FROM (` + q + `) r
WHERE ($5::date IS NULL OR (day, type, identity_id) > ($5, $6, $7))
ORDER BY day, type, identity_id LIMIT $8`
	var ad *time.Time
	var at string
	var ai uuid.UUID
	if after != nil {
		ad, at, ai = &after.Day, after.Type, after.IdentityID
	}
	rows, err := t.tx.Query(ctx, q, f.Start, f.End, f.Type, f.IdentityID, ad, at, ai, limit)
	if err != nil {
		return nil, fmt.Errorf("list daily usage: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Daily, error) {
		var d Daily
		err := r.Scan(&d.Day, &d.Type, &d.IdentityID, &d.Quantity, &d.EventCount, &d.UpdateTime)
		return d, err
	})
}

// Aggregate rebuilds the minute and daily rollups of the days [start, end] from the
// raw events, optionally for some types only, then the summary's rollups from the
// daily ones. It returns the daily rows written
// (inserted or changed) and deleted.
func (t *Tx) Aggregate(ctx context.Context, tenant uuid.UUID, start, end time.Time, types []string) (updated, deleted int64, err error) {
	from := start.UTC()
	to := end.UTC().AddDate(0, 0, 1)
	const daily = `WITH fresh AS (
  SELECT (event_time AT TIME ZONE 'UTC')::date AS day, type, identity_id, sum(quantity)::bigint AS q, count(*)::bigint AS n
  FROM usage.events
  WHERE event_time >= $2 AND event_time < $3 AND (cardinality($4::text[]) = 0 OR type = ANY($4))
  GROUP BY 1, 2, 3
), up AS (
  INSERT INTO usage.rollup_daily AS r (tenant_id, day, type, identity_id, quantity, event_count)
  SELECT $1, day, type, identity_id, q, n FROM fresh ORDER BY 2, 3, 4
  ON CONFLICT (tenant_id, day, type, identity_id) DO UPDATE
  SET quantity = excluded.quantity, event_count = excluded.event_count, update_time = now()
  WHERE (r.quantity, r.event_count) IS DISTINCT FROM (excluded.quantity, excluded.event_count)
  RETURNING 1
), gone AS (
  DELETE FROM usage.rollup_daily r
  WHERE r.day >= $2::date AND r.day < $3::date AND (cardinality($4::text[]) = 0 OR r.type = ANY($4))
    AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.day = r.day AND f.type = r.type AND f.identity_id = r.identity_id)
  RETURNING 1
)
SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM gone)`
	if types == nil {
		types = []string{}
	}
	fromDay, toDay := from.Format(time.DateOnly), to.Format(time.DateOnly)
	if err := t.tx.QueryRow(ctx, daily, tenant, fromDay, toDay, types).Scan(&updated, &deleted); err != nil {
		return 0, 0, fmt.Errorf("aggregate daily usage: %w", err)
	}
	// Two statements: an upsert would not see the deletions of its own statement.
	if _, err := t.tx.Exec(ctx, `DELETE FROM usage.rollup_minute
WHERE bucket >= $1 AND bucket < $2 AND (cardinality($3::text[]) = 0 OR type = ANY($3))`, from, to, types); err != nil {
		return 0, 0, fmt.Errorf("aggregate minute usage: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO usage.rollup_minute (tenant_id, bucket, type, identity_id, quantity, event_count)
SELECT $1, date_trunc('minute', event_time, 'UTC'), type, identity_id, sum(quantity), count(*)
FROM usage.events
WHERE event_time >= $2 AND event_time < $3 AND (cardinality($4::text[]) = 0 OR type = ANY($4))
GROUP BY 2, 3, 4`, tenant, from, to, types); err != nil {
		return 0, 0, fmt.Errorf("aggregate minute usage: %w", err)
	}
	if err := t.Rederive(ctx, tenant, from, to, types); err != nil {
		return 0, 0, err
	}
	return updated, deleted, nil
}
