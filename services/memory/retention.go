package memory

import (
	"context"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/services/memory/store"
)

// purgeDeleted is the restore-window sweeper: it hard-deletes the soft-deleted
// memories whose tenant's restore window (memory settings restore_window_days,
// counted from the deletion) has ended, with their history and vectors, tenant
// by tenant, emitting memory.deleted (hard, purged) for each. A memory restored
// meanwhile left the queue with its restore.
func (s *Service) purgeDeleted(ctx context.Context) error {
	for {
		due, err := s.store.Global().DuePurges(ctx, 500)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("restore-window sweeper: list due purges", "err", err)
			}
			return err
		}
		if len(due) == 0 {
			return nil
		}
		byTenant := map[uuid.UUID][]uuid.UUID{}
		for _, d := range due {
			byTenant[d.TenantID] = append(byTenant[d.TenantID], d.MemoryID)
		}
		for tenant, ids := range byTenant {
			var n int
			err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
				var gone []store.Memory
				err := tx.Query(ctx, `DELETE FROM memory.memories m USING memory.deletions d
WHERE d.memory_id = m.id AND m.id = ANY($1) AND m.delete_time IS NOT NULL AND d.purge_time <= now()
RETURNING `+store.Columns, []any{ids}, nil, func(m store.Memory) { gone = append(gone, m) })
				if err != nil {
					return err
				}
				n = len(gone)
				for _, m := range gone {
					ev, err := newEvent(m, EventDeleted, eventData{Version: m.Version, Hard: true, Purged: true})
					if err != nil {
						return err
					}
					if err := tx.Emit(ctx, ev); err != nil {
						return err
					}
				}
				// Queue rows whose memory is gone or live again are stale.
				_, err = tx.Tx.Exec(ctx, `DELETE FROM memory.deletions d WHERE d.memory_id = ANY($1)
AND NOT EXISTS (SELECT 1 FROM memory.memories m WHERE m.id = d.memory_id AND m.delete_time IS NOT NULL)`, ids)
				return err
			})
			if err != nil {
				s.logger.Warn("restore-window sweeper: purge", "tenant", tenant, "err", err)
				return err
			}
			if n > 0 {
				s.logger.Info("restore-window sweeper: purged soft-deleted memories", "tenant", tenant, "memories", n)
			}
		}
		if len(due) < 500 {
			return nil
		}
	}
}
