package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

const maxBulk = 1000

// itemStatus is the google.rpc.Status of one bulk item.
func itemStatus(err error) *status.Status {
	if err == nil {
		return &status.Status{Code: int32(codes.OK)}
	}
	st, _ := apierr.ToStatus(err)
	return st.Proto()
}

// BulkCreate creates each item in its own savepoint of one transaction, so a bad
// item fails alone while the rest commit together.
func (s *Service) BulkCreate(ctx context.Context, req *memoryv1.BulkCreateMemoriesRequest) (*memoryv1.BulkCreateMemoriesResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	items := req.GetMemories()
	if len(items) == 0 || len(items) > maxBulk {
		return nil, apierr.Field("memories", "must hold 1 to %d items", maxBulk)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	results := make([]*memoryv1.BulkCreateMemoryResult, len(items))
	// Each item is checked on its own first; a bad one gets its status and
	// the others go on.
	params := make([]sqlc.InsertMemoriesParams, len(items))
	var plain, keyed []int
	for i, item := range items {
		results[i] = &memoryv1.BulkCreateMemoryResult{}
		p, err := s.newMemory(c, item, fmt.Sprintf("memories[%d].", i), now)
		if err != nil {
			results[i].Status = itemStatus(err)
			continue
		}
		params[i] = p
		if p.IdempotencyKey != nil {
			keyed = append(keyed, i)
		} else {
			plain = append(plain, i)
		}
	}
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		enc, err := s.encrypting(ctx, tx, c.tenant)
		if err != nil {
			return err
		}
		// The items without an idempotency key are stored together, in one
		// savepoint and a few round trips. Should one of them fail (something
		// the checks above did not foresee), the savepoint undoes them all
		// and they are stored one by one like the keyed items, so that the
		// failure is the failing item's alone.
		if len(plain) > 0 {
			batch := make([]sqlc.InsertMemoriesParams, len(plain))
			for j, i := range plain {
				batch[j] = params[i]
			}
			var ms []store.Memory
			err := tx.Savepoint(ctx, func(sp *store.Tx) error {
				var err error
				ms, err = s.insertMany(ctx, sp, batch, enc)
				return err
			})
			if err == nil {
				for j, i := range plain {
					if results[i].Memory, err = toProto(ms[j]); err != nil {
						return err
					}
					results[i].Status = itemStatus(nil)
				}
				plain = nil
			}
		}
		for _, i := range slices.Concat(plain, keyed) {
			var m store.Memory
			err = tx.Savepoint(ctx, func(sp *store.Tx) error {
				var err error
				m, _, err = s.insert(ctx, sp, params[i], enc)
				return err
			})
			if err != nil {
				results[i].Status = itemStatus(s.mapErr(err, ""))
				continue
			}
			if results[i].Memory, err = toProto(m); err != nil {
				return err
			}
			results[i].Status = itemStatus(nil)
		}
		return nil
	})
	if err != nil {
		return nil, s.mapErr(err, "")
	}
	return &memoryv1.BulkCreateMemoriesResponse{Results: results}, nil
}

// BulkDelete deletes by ids (a status per id) or by filter (up to 1000 matches,
// oldest first).
func (s *Service) BulkDelete(ctx context.Context, req *memoryv1.BulkDeleteMemoriesRequest) (*memoryv1.BulkDeleteMemoriesResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	hasIDs, hasFilter := len(req.GetIds()) > 0, req.GetFilter() != nil
	if hasIDs == hasFilter {
		return nil, apierr.Field("ids", "exactly one of ids and filter must be set")
	}
	if len(req.GetIds()) > maxBulk {
		return nil, apierr.Field("ids", "must hold 1 to %d ids", maxBulk)
	}
	ids := make([]uuid.UUID, len(req.GetIds()))
	for i, raw := range req.GetIds() {
		if ids[i], err = parseID(fmt.Sprintf("ids[%d]", i), raw); err != nil {
			return nil, err
		}
	}
	resp := &memoryv1.BulkDeleteMemoriesResponse{}
	var selectSQL string
	args := &sqlArgs{}
	if hasFilter {
		conds, err := s.where(c, selection{filter: req.GetFilter()}, true, args)
		if err != nil {
			return nil, err
		}
		selectSQL = "SELECT m.id FROM memory.memories m WHERE " + strings.Join(conds, " AND ") +
			" ORDER BY m.create_time, m.id LIMIT " + args.add(maxBulk+1)
	}
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		if hasFilter {
			rows, err := tx.Tx.Query(ctx, selectSQL, args.vals...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id uuid.UUID
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if len(ids) > maxBulk {
				ids, resp.HasMore = ids[:maxBulk], true
			}
		}
		for _, id := range ids {
			res := &memoryv1.BulkDeleteMemoryResult{Id: id.String()}
			resp.Results = append(resp.Results, res)
			err := tx.Savepoint(ctx, func(sp *store.Tx) error {
				if req.GetValidateOnly() {
					_, err := s.visible(ctx, sp, c, id, req.GetHard(), true, false)
					return err
				}
				_, err := s.deleteOne(ctx, sp, c, id, req.GetHard())
				return err
			})
			if err != nil {
				res.Status = itemStatus(s.mapErr(err, id.String()))
				continue
			}
			res.Status = itemStatus(nil)
			resp.DeletedCount++
		}
		return nil
	})
	if err != nil {
		return nil, s.mapErr(err, "")
	}
	return resp, nil
}
