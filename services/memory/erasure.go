package memory

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	"github.com/manushya-ai/manushya/services/memory/store"
)

// erasureConsumerName is the durable consumer of identity.erased and tenant.erased.
const erasureConsumerName = "memory-erasure"

// erasureBatch is how many memories one transaction removes: an identity with
// 100,000 memories is erased in a few dozen short transactions rather than one
// that holds its locks and its WAL for the whole run.
const erasureBatch = 5000

// consumeErasures removes the memories of erased identities and tenants until
// ctx ends (see pkg/erasure).
func (s *Service) consumeErasures(ctx context.Context, b *bus.Bus) error {
	return erasure.ConsumeErased(ctx, b, erasureConsumerName, s.logger, func(ctx context.Context, r erasure.Request) error {
		return s.Erase(ctx, r.Tenant, r.ErasureID, r.Identity)
	})
}

// Erase hard-deletes every memory of identity in tenant (of the whole tenant when
// identity is nil) with its versions, embedding, and pending jobs, in batches of
// erasureBatch, then reports the counts with erasure.progress. It may run again
// for the same erasure (a redelivery, a restart halfway): the counts carry over
// in memory.erasures and the report is sent once.
func (s *Service) Erase(ctx context.Context, tenant, erasureID uuid.UUID, identity *uuid.UUID) error {
	for {
		var done bool
		err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			var reported bool
			if err := tx.Tx.QueryRow(ctx, `INSERT INTO memory.erasures (erasure_id, tenant_id) VALUES ($1, $2)
				ON CONFLICT (erasure_id) DO UPDATE SET erasure_id = EXCLUDED.erasure_id
				RETURNING report_time IS NOT NULL`, erasureID, tenant).Scan(&reported); err != nil {
				return fmt.Errorf("erasure progress row: %w", err)
			}
			if reported {
				done = true
				return nil
			}
			n, memories, versions, err := deleteMemoryBatch(ctx, tx, tenant, identity)
			if err != nil {
				return err
			}
			var total, totalVersions int64
			if err := tx.Tx.QueryRow(ctx, `UPDATE memory.erasures SET memories = memories + $2, versions = versions + $3
				WHERE erasure_id = $1 RETURNING memories, versions`, erasureID, memories, versions).Scan(&total, &totalVersions); err != nil {
				return fmt.Errorf("erasure progress: %w", err)
			}
			if n == erasureBatch {
				return nil
			}
			// The last batch: report in the same transaction.
			ev, err := erasure.ProgressEvent(tenant.String(), eventSource, erasure.ServiceMemory, erasureID.String(),
				[]erasure.Count{{Kind: "memories", Count: total}, {Kind: "memory_versions", Count: totalVersions}})
			if err != nil {
				return err
			}
			if err := tx.Emit(ctx, ev); err != nil {
				return err
			}
			if _, err := tx.Tx.Exec(ctx, `UPDATE memory.erasures SET report_time = now() WHERE erasure_id = $1`, erasureID); err != nil {
				return err
			}
			done = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("erase memories (erasure %s): %w", erasureID, err)
		}
		if done {
			return nil
		}
		erasure.KeepAlive(ctx)
	}
}

// deleteMemoryBatch hard-deletes up to erasureBatch memories of identity in tenant
// (of the whole tenant when identity is nil) with their versions, embeddings and
// pending jobs, in tx. It returns how many memories it found and how many memory
// and version rows it deleted; fewer found than erasureBatch means none is left.
func deleteMemoryBatch(ctx context.Context, tx *store.Tx, tenant uuid.UUID, identity *uuid.UUID) (found int, memories, versions int64, err error) {
	// The batch's rows are locked, so a concurrent update of one of them waits
	// and then finds it gone.
	rows, err := tx.Tx.Query(ctx, `SELECT id FROM memory.memories
		WHERE tenant_id = $1 AND ($2::uuid IS NULL OR identity_id = $2)
		LIMIT $3 FOR UPDATE`, tenant, identity, erasureBatch)
	if err != nil {
		return 0, 0, 0, err
	}
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, 0, 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, 0, err
	}
	if len(ids) == 0 {
		return 0, 0, 0, nil
	}
	tag, err := tx.Tx.Exec(ctx, `DELETE FROM memory.memory_versions WHERE memory_id = ANY ($1)`, ids)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("delete memory versions: %w", err)
	}
	versions = tag.RowsAffected()
	// Embedding jobs and expirations go with their memories (ON DELETE CASCADE);
	// the embedding is a column of the row.
	if tag, err = tx.Tx.Exec(ctx, `DELETE FROM memory.memories WHERE id = ANY ($1)`, ids); err != nil {
		return 0, 0, 0, fmt.Errorf("delete memories: %w", err)
	}
	return len(ids), tag.RowsAffected(), versions, nil
}

// purgeConsumerName is the durable consumer of identity.purged, a sibling of the
// erasure consumer: the two keep their own positions in the stream.
const purgeConsumerName = "memory-purge"

// consumePurges deletes the memories of purged identities until ctx ends.
func (s *Service) consumePurges(ctx context.Context, b *bus.Bus) error {
	return erasure.Consume(ctx, b, purgeConsumerName, []string{erasure.EventIdentityPurged}, s.logger,
		func(ctx context.Context, ev bus.Event) error {
			tenant, err := uuid.Parse(ev.Tenant)
			if err != nil {
				return nil
			}
			var data erasure.Purged
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				s.logger.WarnContext(ctx, "identity.purged not understood; dropped", "event", ev.ID, "err", err)
				return nil
			}
			id, err := uuid.Parse(data.IdentityID)
			if err != nil {
				s.logger.WarnContext(ctx, "identity.purged names no identity; dropped", "event", ev.ID)
				return nil
			}
			n, err := s.PurgeIdentityMemories(ctx, tenant, id)
			if n > 0 {
				s.logger.InfoContext(ctx, "deleted the memories of a purged identity", "tenant", tenant, "identity", id, "memories", n)
			}
			return err
		})
}

// PurgeIdentityMemories hard-deletes every memory of a purged identity with its
// versions, embedding and pending jobs, in batches of erasureBatch, and returns
// how many it deleted. Unlike Erase it keeps no progress and reports nothing: a
// purge has no receipt, and running again (a redelivery, a restart halfway) only
// deletes what is left. Usage records stay, as billing history.
func (s *Service) PurgeIdentityMemories(ctx context.Context, tenant, identity uuid.UUID) (int64, error) {
	var total int64
	for {
		var found int
		var memories int64
		err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			var err error
			found, memories, _, err = deleteMemoryBatch(ctx, tx, tenant, &identity)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("delete memories of purged identity %s: %w", identity, err)
		}
		total += memories
		if found < erasureBatch {
			return total, nil
		}
		erasure.KeepAlive(ctx)
	}
}
