package memory

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/apierr"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
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
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		enc, err := s.encrypting(ctx, tx, c.tenant)
		if err != nil {
			return err
		}
		for i, item := range items {
			res := &memoryv1.BulkCreateMemoryResult{}
			results[i] = res
			p, err := s.newMemory(c, item, fmt.Sprintf("memories[%d].", i), now)
			if err != nil {
				res.Status = itemStatus(err)
				continue
			}
			var m store.Memory
			err = tx.Savepoint(ctx, func(sp *store.Tx) error {
				var err error
				m, _, err = s.insert(ctx, sp, p, enc)
				return err
			})
			if err != nil {
				res.Status = itemStatus(s.mapErr(err, ""))
				continue
			}
			if res.Memory, err = toProto(m); err != nil {
				return err
			}
			res.Status = itemStatus(nil)
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
