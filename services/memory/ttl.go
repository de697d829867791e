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
	for {
		due, err := s.store.Global().DueExpirations(ctx, 500)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("ttl sweeper: list due expirations", "err", err)
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
			err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
				rows, err := tx.Tx.Query(ctx, `DELETE FROM memory.memories m
WHERE m.id = ANY($1) AND m.expire_time <= now() RETURNING `+store.Columns, ids)
				if err != nil {
					return err
				}
				var gone []store.Memory
				for rows.Next() {
					var m store.Memory
					if err := rows.Scan(m.ScanDest()...); err != nil {
						rows.Close()
						return err
					}
					gone = append(gone, m)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return err
				}
				for _, m := range gone {
					ev, err := newEvent(m, EventExpired, eventData{Version: m.Version})
					if err != nil {
						return err
					}
					if err := tx.Emit(ctx, ev); err != nil {
						return err
					}
				}
				// Expirations whose memory moved its expiry later are left to
				// SetExpiration; any row still due here is stale.
				_, err = tx.Tx.Exec(ctx, `DELETE FROM memory.expirations WHERE memory_id = ANY($1) AND expire_time <= now()`, ids)
				return err
			})
			if err != nil {
				s.logger.Warn("ttl sweeper: purge", "tenant", tenant, "err", err)
				return err
			}
		}
		if len(due) < 500 {
			return nil
		}
	}
}
