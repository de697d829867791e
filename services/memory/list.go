package memory

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/pagination"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

// selection is what list, search and bulk delete have in common: scope fields,
// types, a creation time range and a filter.
type selection struct {
	identityID, agentID, sessionID string
	types                          []string
	filter                         *memoryv1.Filter
	after, before                  *timestamppb.Timestamp
	includeDeleted                 bool
}

// where builds the conjunction selecting what the caller may read (write=false)
// or change, restricted by sel. The tenant is enforced by RLS; the explicit
// tenant_id test lets the planner use the tenant-leading indexes.
func (s *Service) where(c *caller, sel selection, write bool, args *sqlArgs) ([]string, error) {
	conds := []string{"m.tenant_id = " + args.add(c.tenant)}
	if sel.includeDeleted {
		conds = append(conds, store.NotExpired)
	} else {
		conds = append(conds, store.Live)
	}
	ident, err := parseOptionalID("identity_id", sel.identityID)
	if err != nil {
		return nil, err
	}
	own, err := c.scope("identity_id", ident, write, args)
	if err != nil {
		return nil, err
	}
	if own != "" {
		conds = append(conds, own)
	}
	if ident != uuid.Nil {
		conds = append(conds, "m.identity_id = "+args.add(ident))
	}
	agent, err := parseOptionalID("agent_id", sel.agentID)
	if err != nil {
		return nil, err
	}
	if agent != uuid.Nil {
		conds = append(conds, "m.agent_id = "+args.add(agent))
	}
	if sel.sessionID != "" {
		conds = append(conds, "m.session_id = "+args.add(sel.sessionID))
	}
	if len(sel.types) > 0 {
		for i, t := range sel.types {
			if t == "" {
				return nil, apierr.Field(fmt.Sprintf("types[%d]", i), "must not be empty")
			}
		}
		conds = append(conds, "m.type = ANY("+args.add(sel.types)+")")
	}
	if sel.after != nil {
		if err := sel.after.CheckValid(); err != nil {
			return nil, apierr.Field("created_after", "is not a valid time")
		}
		conds = append(conds, "m.create_time >= "+args.add(sel.after.AsTime()))
	}
	if sel.before != nil {
		if err := sel.before.CheckValid(); err != nil {
			return nil, apierr.Field("created_before", "is not a valid time")
		}
		conds = append(conds, "m.create_time < "+args.add(sel.before.AsTime()))
	}
	if sel.filter != nil {
		f, err := compileFilter(sel.filter, "filter", args)
		if err != nil {
			return nil, err
		}
		conds = append(conds, f)
	}
	return conds, nil
}

// List returns a page of memories, newest first.
func (s *Service) List(ctx context.Context, req *memoryv1.ListMemoriesRequest) (*memoryv1.ListMemoriesResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	q := proto.CloneOf(req)
	q.PageSize, q.PageToken = 0, ""
	fpBytes, _ := proto.MarshalOptions{Deterministic: true}.Marshal(q)
	fp := pagination.Fingerprint("memories", c.p.IdentityID, string(fpBytes))
	cursor, err := pagination.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	args := &sqlArgs{}
	conds, err := s.where(c, selection{
		identityID: req.GetIdentityId(), agentID: req.GetAgentId(), sessionID: req.GetSessionId(),
		types: req.GetTypes(), filter: req.GetFilter(), after: req.GetCreatedAfter(), before: req.GetCreatedBefore(),
		includeDeleted: req.GetIncludeDeleted(),
	}, false, args)
	if err != nil {
		return nil, err
	}
	if cursor != "" {
		t, id, ok := parseCursor(cursor)
		if !ok {
			return nil, apierr.Field("page_token", "is not a token this server issued")
		}
		conds = append(conds, fmt.Sprintf("(m.create_time, m.id) < (%s, %s)", args.add(t), args.add(id)))
	}
	size := pagination.Size(req.GetPageSize())
	sql := "SELECT " + store.Columns + " FROM memory.memories m WHERE " + strings.Join(conds, " AND ") +
		" ORDER BY m.create_time DESC, m.id DESC LIMIT " + args.add(size+1)
	var rows []store.Memory
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		return tx.Query(ctx, sql, args.vals, nil, func(m store.Memory) { rows = append(rows, m) })
	})
	if err != nil {
		return nil, s.mapErr(err, "")
	}
	resp := &memoryv1.ListMemoriesResponse{}
	if len(rows) > int(size) {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = pagination.Encode(formatCursor(last.CreateTime, last.ID), fp)
	}
	if rows, err = visibleRows(c, rows, sameMemory); err != nil {
		return nil, s.mapErr(err, "")
	}
	if err := s.openAll(ctx, rows); err != nil {
		return nil, err
	}
	for _, r := range rows {
		m, err := toProto(r)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		resp.Memories = append(resp.Memories, m)
	}
	return resp, nil
}

func formatCursor(t time.Time, id uuid.UUID) string {
	return strconv.FormatInt(t.UnixMicro(), 10) + "_" + id.String()
}

func parseCursor(s string) (time.Time, uuid.UUID, bool) {
	ts, idStr, ok := strings.Cut(s, "_")
	if !ok {
		return time.Time{}, uuid.Nil, false
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, uuid.Nil, false
	}
	id, err := uuid.Parse(idStr)
	if err != nil {
		return time.Time{}, uuid.Nil, false
	}
	return time.UnixMicro(us).UTC(), id, true
}

// ListVersions returns a page of a memory's versions, newest first.
func (s *Service) ListVersions(ctx context.Context, req *memoryv1.ListMemoryVersionsRequest) (*memoryv1.ListMemoryVersionsResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	fp := pagination.Fingerprint("memory_versions", id.String())
	cursor, err := pagination.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	size := pagination.Size(req.GetPageSize())
	params := sqlc.ListVersionsParams{MemoryID: id, PageLimit: size + 1}
	if cursor != "" {
		v, err := strconv.ParseInt(cursor, 10, 32)
		if err != nil {
			return nil, apierr.Field("page_token", "is not a token this server issued")
		}
		v32 := int32(v)
		params.BeforeVersion = &v32
	}
	var rows []sqlc.MemoryMemoryVersion
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		if _, err := s.visible(ctx, tx, c, id, true, false, false); err != nil {
			return err
		}
		rows, err = tx.ListVersions(ctx, params)
		return err
	})
	if err != nil {
		return nil, s.mapErr(err, req.GetId())
	}
	resp := &memoryv1.ListMemoryVersionsResponse{}
	if len(rows) > int(size) {
		rows = rows[:size]
		resp.NextPageToken = pagination.Encode(strconv.Itoa(int(rows[len(rows)-1].Version)), fp)
	}
	for _, r := range rows {
		if err := s.openVersion(ctx, &r); err != nil {
			return nil, err
		}
		v, err := versionToProto(r)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		resp.Versions = append(resp.Versions, v)
	}
	return resp, nil
}
