package memory

import (
	"context"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/services/memory/store"
)

// purgeExpired deletes the memories whose expiry has passed, tenant by tenant,
// emitting memory.expired for each. Reads already hide them (store.Live); this
// reclaims their rows, history and vectors.
func (s *Service) purgeExpired(ctx context.Context) error {
	list := func(ctx context.Context, limit int32) ([]dueMemory, error) {
		rows, err := s.store.Global().DueExpirations(ctx, limit)
		return dueRows(rows), err
	}
	return s.sweepDue(ctx, "ttl sweeper", list, func(ctx context.Context, tx *store.Tx, ids []uuid.UUID) (int, error) {
		var gone []store.Memory
		err := tx.Query(ctx, `DELETE FROM memory.memories m
WHERE m.id = ANY($1) AND m.expire_time <= now() RETURNING `+store.Columns, []any{ids}, nil, func(m store.Memory) { gone = append(gone, m) })
		if err != nil {
			return 0, err
		}
		for _, m := range gone {
			ev, err := newEvent(m, EventExpired, eventData{Version: m.Version})
			if err != nil {
				return 0, err
			}
			if err := tx.Emit(ctx, ev); err != nil {
				return 0, err
			}
		}
		// Expirations whose memory moved its expiry later are left to
		// SetExpiration; any row still due here is stale.
		_, err = tx.Tx.Exec(ctx, `DELETE FROM memory.expirations WHERE memory_id = ANY($1) AND expire_time <= now()`, ids)
		return len(gone), err
	})
}
