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
	list := func(ctx context.Context, limit int32) ([]dueMemory, error) {
		rows, err := s.store.Global().DuePurges(ctx, limit)
		return dueRows(rows), err
	}
	return s.sweepDue(ctx, "restore-window sweeper", list, func(ctx context.Context, tx *store.Tx, ids []uuid.UUID) (int, error) {
		var gone []store.Memory
		err := tx.Query(ctx, `DELETE FROM memory.memories m USING memory.deletions d
WHERE d.memory_id = m.id AND m.id = ANY($1) AND m.delete_time IS NOT NULL AND d.purge_time <= now()
RETURNING `+store.Columns, []any{ids}, nil, func(m store.Memory) { gone = append(gone, m) })
		if err != nil {
			return 0, err
		}
		for _, m := range gone {
			ev, err := newEvent(m, EventDeleted, eventData{Version: m.Version, Hard: true, Purged: true})
			if err != nil {
				return 0, err
			}
			if err := tx.Emit(ctx, ev); err != nil {
				return 0, err
			}
		}
		// Queue rows whose memory is gone or live again are stale.
		_, err = tx.Tx.Exec(ctx, `DELETE FROM memory.deletions d WHERE d.memory_id = ANY($1)
AND NOT EXISTS (SELECT 1 FROM memory.memories m WHERE m.id = d.memory_id AND m.delete_time IS NOT NULL)`, ids)
		return len(gone), err
	})
}
