package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/manushya-ai/manushya/services/memory/store"
)

// indexBatch is how many fresh rows one indexer transaction puts in the HNSW
// graph: about a second of graph inserts on two cores, short enough that the
// row locks it holds delay an edit of those memories only briefly.
const indexBatch = 500

// A stored vector is searchable at once as a "fresh" row (embedding_indexed
// false, migration 00012): vector search ranks a tenant's fresh rows by an
// exact scan next to the graph's candidates (annSQL). The indexer moves them
// into the graph behind the searchable path, so the cost of the graph insert
// (about 2 ms a row) is no longer paid before a memory can be found.

// markFresh queues tenant for the indexer, in the transaction that stores its
// vectors. The upsert holds the queue row until that transaction commits, so
// the indexer's removal of the row (indexTenant) waits for it and then sees
// its vectors; a writer that comes after the removal inserts the row again.
func markFresh(ctx context.Context, tx *store.Tx, tenant uuid.UUID) error {
	_, err := tx.Tx.Exec(ctx, `INSERT INTO memory.fresh_tenants (tenant_id) VALUES ($1)
ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id`, tenant)
	return err
}

// indexFresh puts the fresh vectors of every queued tenant into the HNSW graph,
// longest-waiting tenant first, until none is left. It runs in the background
// (Module.Start); errors are logged, and the tenant stays queued.
func (s *Service) indexFresh(ctx context.Context) error {
	rows, err := s.store.Pool().Query(ctx, `SELECT tenant_id FROM memory.fresh_tenants ORDER BY since_time`)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("indexer: list tenants", "err", err)
		}
		return err
	}
	tenants, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("indexer: list tenants", "err", err)
		}
		return err
	}
	var backlog int64
	for _, tenant := range tenants {
		n, err := s.indexTenant(ctx, tenant)
		backlog += n
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("indexer: index fresh vectors", "tenant", tenant, "err", err)
			}
			return err
		}
	}
	// The backlog met by this pass: how far the graph trails the stored vectors.
	s.metrics.fresh.Set(float64(backlog))
	return nil
}

// indexTenant drains one tenant's fresh rows in batches of indexBatch, oldest
// first, and returns how many it found waiting at the start.
func (s *Service) indexTenant(ctx context.Context, tenant uuid.UUID) (int64, error) {
	// The queue row goes first: a writer still holding it (markFresh) is waited
	// for, so its vectors are visible to the batches below.
	if _, err := s.store.Pool().Exec(ctx, `DELETE FROM memory.fresh_tenants WHERE tenant_id = $1`, tenant); err != nil {
		return 0, err
	}
	var waiting int64
	// A failed pass leaves the tenant queued for the next one (also when it
	// failed because the process is stopping).
	requeue := func(err error) (int64, error) {
		rctx := context.WithoutCancel(ctx)
		_ = s.store.InTenant(rctx, tenant, func(tx *store.Tx) error { return markFresh(rctx, tx, tenant) })
		return waiting, err
	}
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		return tx.Tx.QueryRow(ctx, `SELECT count(*) FROM memory.memories
WHERE tenant_id = $1 AND embedding IS NOT NULL AND NOT embedding_indexed`, tenant).Scan(&waiting)
	})
	if err != nil {
		return requeue(err)
	}
	began := time.Now()
	var indexed int64
	for {
		var n int64
		err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			// Setting the flag makes the row version enter the partial HNSW
			// index. The outer NOT embedding_indexed is rechecked after a lock
			// wait, so a row another indexer flipped meanwhile is not inserted
			// into the graph twice.
			tag, err := tx.Tx.Exec(ctx, `UPDATE memory.memories m SET embedding_indexed = true
WHERE m.id IN (SELECT f.id FROM memory.memories f
               WHERE f.tenant_id = $1 AND f.embedding IS NOT NULL AND NOT f.embedding_indexed
               ORDER BY f.create_time LIMIT $2)
  AND m.embedding IS NOT NULL AND NOT m.embedding_indexed`, tenant, indexBatch)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return requeue(fmt.Errorf("after %d rows: %w", indexed, err))
		}
		indexed += n
		s.metrics.indexed.Add(float64(n))
		if n < indexBatch {
			break
		}
	}
	if indexed > 0 {
		s.logger.Debug("indexer: fresh vectors indexed", "tenant", tenant, "waiting", waiting, "indexed", indexed,
			"seconds", time.Since(began).Seconds())
	}
	return waiting, nil
}
