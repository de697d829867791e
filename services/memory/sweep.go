package memory

import (
	"context"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/services/memory/store"
)

// sweepBatch is how many due rows a sweeper lists at a time, across tenants.
const sweepBatch = 500

// dueMemory is one row of a sweeper's work table: a memory of a tenant whose
// time has come (sqlc's DueExpirationsRow and DuePurgesRow have this shape).
type dueMemory struct {
	MemoryID uuid.UUID
	TenantID uuid.UUID
}

// dueRows converts a due-work query's rows.
func dueRows[T ~struct {
	MemoryID uuid.UUID
	TenantID uuid.UUID
}](rows []T) []dueMemory {
	out := make([]dueMemory, len(rows))
	for i, r := range rows {
		out[i] = dueMemory(r)
	}
	return out
}

// sweepDue is the loop the memory sweepers share: it lists due work sweepBatch
// rows at a time (the work tables carry no RLS, so one query sees every tenant),
// and hands each tenant's memory ids to purge in a transaction scoped to that
// tenant, until nothing is due. purge reports how many memories it removed; name
// labels the logs.
func (s *Service) sweepDue(ctx context.Context, name string, list func(context.Context, int32) ([]dueMemory, error),
	purge func(context.Context, *store.Tx, []uuid.UUID) (int, error)) error {
	for {
		due, err := list(ctx, sweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn(name+": list due work", "err", err)
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
				var err error
				n, err = purge(ctx, tx, ids)
				return err
			})
			if err != nil {
				s.logger.Warn(name+": purge", "tenant", tenant, "err", err)
				return err
			}
			if n > 0 {
				s.logger.Info(name+": purged memories", "tenant", tenant, "memories", n)
			}
		}
		if len(due) < sweepBatch {
			return nil
		}
	}
}
