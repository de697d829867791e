package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/pagination"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// auditServer implements AuditService.
type auditServer struct {
	eventsv1.UnimplementedAuditServiceServer
	svc *Service
}

func jsonStruct(raw []byte) *structpb.Struct {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		var v any
		_ = json.Unmarshal(raw, &v)
		m = map[string]any{"value": v}
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil
	}
	return s
}

func auditToProto(e sqlc.WebhooksAuditEntry) *eventsv1.AuditEntry {
	return &eventsv1.AuditEntry{
		Id: e.ID.String(), Sequence: e.Sequence, TenantId: e.TenantID.String(),
		Actor: &eventsv1.AuditActor{
			IdentityId: e.ActorIdentityID, Kind: eventsv1.AuditActorKind(e.ActorKind), ApiKeyId: e.ActorApiKeyID,
			SessionId: e.ActorSessionID, ExternalId: e.ActorExternalID,
		},
		Action: e.Action, ResourceType: e.ResourceType, ResourceId: e.ResourceID,
		Before: jsonStruct(e.Before), After: jsonStruct(e.After), RequestId: e.RequestID, ClientIp: e.ClientIp,
		UserAgent: e.UserAgent, Result: eventsv1.AuditResult(e.Result), ErrorReason: errorsv1.ErrorReason(e.ErrorReason),
		CreateTime: timestamppb.New(e.CreateTime), PrevHash: e.PrevHash, Hash: e.Hash,
	}
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *auditServer) ListAuditEntries(ctx context.Context, req *eventsv1.ListAuditEntriesRequest) (*eventsv1.ListAuditEntriesResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	fp := pagination.Fingerprint("audit", req.GetActorIdentityId(), req.GetActorKind(), req.GetActorApiKeyId(), req.GetAction(),
		req.GetResourceType(), req.GetResourceId(), req.GetResult(), req.GetRequestId(), req.GetStartTime().String(), req.GetEndTime().String())
	cursor, err := pagination.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	p := sqlc.ListAuditEntriesParams{
		ActorIdentityID: strp(req.GetActorIdentityId()), ActorApiKeyID: strp(req.GetActorApiKeyId()),
		Action: strp(req.GetAction()), ResourceType: strp(req.GetResourceType()), ResourceID: strp(req.GetResourceId()),
		RequestID: strp(req.GetRequestId()), StartTime: optTime(req.GetStartTime()), EndTime: optTime(req.GetEndTime()),
		PageLimit: pagination.Size(req.GetPageSize()) + 1,
	}
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil {
			return nil, apierr.Field("page_token", "is not a token this server issued")
		}
		p.BeforeSequence = &n
	}
	if k := req.GetActorKind(); k != 0 {
		v := int16(k)
		p.ActorKind = &v
	}
	if r := req.GetResult(); r != 0 {
		v := int16(r)
		p.Result = &v
	}
	var rows []sqlc.WebhooksAuditEntry
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListAuditEntries(ctx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &eventsv1.ListAuditEntriesResponse{}
	if len(rows) == int(p.PageLimit) {
		rows = rows[:len(rows)-1]
		resp.NextPageToken = pagination.Encode(strconv.FormatInt(rows[len(rows)-1].Sequence, 10), fp)
	}
	for _, r := range rows {
		resp.Entries = append(resp.Entries, auditToProto(r))
	}
	return resp, nil
}

func (s *auditServer) GetAuditEntry(ctx context.Context, req *eventsv1.GetAuditEntryRequest) (*eventsv1.GetAuditEntryResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	var row sqlc.WebhooksAuditEntry
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetAuditEntry(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.NotFound("audit entry", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	return &eventsv1.GetAuditEntryResponse{Entry: auditToProto(row)}, nil
}

const verifyChunk = 1000

// VerifyAuditChain recomputes every hash of the range in sequence order and names
// the first entry that does not chain. The oldest entry kept (after retention),
// or the first of a range, is the anchor: its prev_hash is taken as given.
func (s *auditServer) VerifyAuditChain(ctx context.Context, req *eventsv1.VerifyAuditChainRequest) (*eventsv1.VerifyAuditChainResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetStartSequence() < 0 || req.GetEndSequence() < 0 {
		return nil, apierr.Field("start_sequence", "must not be negative")
	}
	resp := &eventsv1.VerifyAuditChainResponse{Ok: true}
	// One repeatable-read view would be better for a long chain; each chunk reads
	// only entries at or below the last sequence seen at the start.
	var bounds sqlc.AuditBoundsRow
	if err := s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		bounds, err = tx.AuditBounds(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	first, last := max(req.GetStartSequence(), bounds.FirstSequence), bounds.LastSequence
	if req.GetEndSequence() > 0 {
		last = min(last, req.GetEndSequence())
	}
	if bounds.LastSequence == 0 || first > last {
		return resp, nil
	}
	resp.StartSequence = first
	prevSeq, prevHash := first-1, ""
	anchored := false
	for prevSeq < last {
		var rows []sqlc.WebhooksAuditEntry
		if err := s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			rows, err = tx.AuditChainSlice(ctx, sqlc.AuditChainSliceParams{AfterSequence: prevSeq, LastSequence: last, PageLimit: verifyChunk})
			return err
		}); err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			return broken(resp, nil, prevSeq+1, eventsv1.AuditChainBreak_AUDIT_CHAIN_BREAK_SEQUENCE_GAP,
				fmt.Sprintf("entries %d to %d are missing", prevSeq+1, last)), nil
		}
		for _, e := range rows {
			if e.Sequence != prevSeq+1 {
				return broken(resp, &e, e.Sequence, eventsv1.AuditChainBreak_AUDIT_CHAIN_BREAK_SEQUENCE_GAP,
					fmt.Sprintf("expected sequence %d, found %d", prevSeq+1, e.Sequence)), nil
			}
			if anchored && e.PrevHash != prevHash {
				return broken(resp, &e, e.Sequence, eventsv1.AuditChainBreak_AUDIT_CHAIN_BREAK_PREV_HASH_MISMATCH,
					"prev_hash is not the hash of the entry before"), nil
			}
			h, err := entryHash(e)
			if err != nil || h != e.Hash {
				return broken(resp, &e, e.Sequence, eventsv1.AuditChainBreak_AUDIT_CHAIN_BREAK_HASH_MISMATCH,
					"the entry's content does not match its hash"), nil
			}
			anchored = true
			prevSeq, prevHash = e.Sequence, e.Hash
			resp.EntriesChecked++
			resp.EndSequence, resp.EndHash = e.Sequence, e.Hash
		}
	}
	return resp, nil
}

func broken(resp *eventsv1.VerifyAuditChainResponse, e *sqlc.WebhooksAuditEntry, seq int64, why eventsv1.AuditChainBreak, detail string) *eventsv1.VerifyAuditChainResponse {
	resp.Ok = false
	resp.FirstBrokenSequence = seq
	if e != nil {
		resp.FirstBrokenId = e.ID.String()
	}
	resp.BreakReason = why
	resp.BreakDetail = detail
	return resp
}

const exportChunk = 500

func (s *auditServer) ExportAuditEntries(req *eventsv1.ExportAuditEntriesRequest, stream grpc.ServerStreamingServer[eventsv1.ExportAuditEntriesResponse]) error {
	ctx := stream.Context()
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	p := sqlc.ListAuditEntriesParams{
		ActorIdentityID: strp(req.GetActorIdentityId()), Action: strp(req.GetAction()),
		ResourceType: strp(req.GetResourceType()), ResourceID: strp(req.GetResourceId()),
		StartTime: optTime(req.GetStartTime()), EndTime: optTime(req.GetEndTime()), Ascending: true, PageLimit: exportChunk,
	}
	if r := req.GetResult(); r != 0 {
		v := int16(r)
		p.Result = &v
	}
	after := int64(0)
	for {
		p.AfterSequence = &after
		var rows []sqlc.WebhooksAuditEntry
		if err := s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			rows, err = tx.ListAuditEntries(ctx, p)
			return err
		}); err != nil {
			return err
		}
		for _, r := range rows {
			if err := stream.Send(&eventsv1.ExportAuditEntriesResponse{Entry: auditToProto(r)}); err != nil {
				return err
			}
			after = r.Sequence
		}
		if len(rows) < exportChunk {
			return nil
		}
	}
}

func (s *auditServer) retention(ctx context.Context) (*eventsv1.AuditRetention, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	out := &eventsv1.AuditRetention{}
	set, err := s.svc.store.Global().GetAuditSettings(ctx, tenant)
	if err == nil {
		out.Days, out.UpdateTime = set.RetentionDays, timestamppb.New(set.UpdateTime)
	} else if err := store.MapErr(err); !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		b, err := tx.AuditBounds(ctx)
		if err == nil && b.LastSequence > 0 {
			out.OldestEntryTime = timestamppb.New(b.Oldest)
		}
		return err
	})
	return out, err
}

func (s *auditServer) GetAuditRetention(ctx context.Context, _ *eventsv1.GetAuditRetentionRequest) (*eventsv1.GetAuditRetentionResponse, error) {
	r, err := s.retention(ctx)
	if err != nil {
		return nil, err
	}
	return &eventsv1.GetAuditRetentionResponse{Retention: r}, nil
}

func (s *auditServer) UpdateAuditRetention(ctx context.Context, req *eventsv1.UpdateAuditRetentionRequest) (*eventsv1.UpdateAuditRetentionResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if d := req.GetDays(); d < 0 || d > 36500 {
		return nil, apierr.Field("days", "must be between 0 and 36500")
	}
	if _, err := s.svc.store.Global().UpsertAuditSettings(ctx, sqlc.UpsertAuditSettingsParams{TenantID: tenant, RetentionDays: req.GetDays()}); err != nil {
		return nil, err
	}
	r, err := s.retention(ctx)
	if err != nil {
		return nil, err
	}
	return &eventsv1.UpdateAuditRetentionResponse{Retention: r}, nil
}

// auditRetention removes each tenant's entries older than its retention, oldest
// first; the oldest entry left becomes the chain's anchor.
func (s *Service) auditRetention(ctx context.Context) error {
	sets, err := s.store.Global().ListAuditSettings(ctx)
	if err != nil {
		return err
	}
	for _, set := range sets {
		cutoff := s.now().Add(-time.Duration(set.RetentionDays) * 24 * time.Hour)
		if err := s.store.InTenant(ctx, set.TenantID, func(tx *store.Tx) error {
			_, err := tx.DeleteAuditBefore(ctx, cutoff)
			return err
		}); err != nil {
			return fmt.Errorf("audit retention of %s: %w", set.TenantID, err)
		}
	}
	return nil
}
