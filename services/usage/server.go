package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/pagination"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// usageServer implements UsageService.
type usageServer struct {
	usagev1.UnimplementedUsageServiceServer
	svc *Service
}

func (s *usageServer) IngestUsageEvents(ctx context.Context, req *usagev1.IngestUsageEventsRequest) (*usagev1.IngestUsageEventsResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(req.GetEvents()); n > 1000 {
		return nil, apierr.Field("events", "at most 1000 events per call, got %d", n)
	}
	now := s.svc.now()
	resp := &usagev1.IngestUsageEventsResponse{Results: make([]*usagev1.UsageEventResult, len(req.GetEvents()))}
	var valid []store.Event
	var at []int
	for i, e := range req.GetEvents() {
		raw := RawEvent{ID: e.GetId(), Source: e.GetSource(), Type: e.GetType(), IdentityID: e.GetIdentityId()}
		if e.Quantity != nil {
			q := e.GetQuantity()
			raw.Quantity = &q
		}
		if raw.IdentityID == "" {
			raw.IdentityID = p.IdentityID
		}
		if e.GetEventTime() != nil {
			raw.Time = e.GetEventTime().AsTime()
		}
		if e.GetProperties() != nil {
			raw.Properties, _ = json.Marshal(e.GetProperties().AsMap())
		}
		ev, verr := s.svc.validate(tenant, raw, fmt.Sprintf("events[%d].", i), now)
		resp.Results[i] = &usagev1.UsageEventResult{Id: ev.ID}
		if verr != nil {
			resp.Results[i].Status = verr.GRPCStatus().Proto()
			resp.RejectedCount++
			continue
		}
		valid = append(valid, ev)
		at = append(at, i)
	}
	if len(valid) > 0 {
		fresh, err := s.svc.store.Ingest(ctx, valid)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			resp.Results[i].Status = &status.Status{}
			if fresh[j] {
				resp.AcceptedCount++
			} else {
				resp.Results[i].Duplicate = true
				resp.DuplicateCount++
			}
		}
		if resp.GetAcceptedCount() > 0 {
			s.svc.summaries.invalidate(tenant.String())
		}
		if resp.GetAcceptedCount() > 0 && s.svc.quotas != nil {
			s.svc.quotas.Touch(ctx, tenant)
		}
	}
	return resp, nil
}

type eventCursor struct {
	T  time.Time `json:"t"`
	S  string    `json:"s"`
	ID string    `json:"i"`
}

func (s *usageServer) ListUsageEvents(ctx context.Context, req *usagev1.ListUsageEventsRequest) (*usagev1.ListUsageEventsResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	f := store.EventFilter{Type: req.GetType(), Source: req.GetSource()}
	if req.GetIdentityId() != "" {
		id, err := uuid.Parse(req.GetIdentityId())
		if err != nil {
			return nil, apierr.Field("identity_id", "must be a UUID")
		}
		f.IdentityID = &id
	}
	if req.GetStartTime() != nil {
		t := req.GetStartTime().AsTime()
		f.Start = &t
	}
	if req.GetEndTime() != nil {
		t := req.GetEndTime().AsTime()
		f.End = &t
	}
	fp := pagination.Fingerprint("usage-events", f.Type, f.Source, f.IdentityID, f.Start, f.End)
	raw, err := pagination.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	var after *store.EventCursor
	if raw != "" {
		var c eventCursor
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, apierr.Field("page_token", "is not a token this server issued")
		}
		after = &store.EventCursor{Time: c.T, Source: c.S, ID: c.ID}
	}
	limit := pagination.Size(req.GetPageSize())
	var rows []store.Event
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListEvents(ctx, f, after, limit+1)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &usagev1.ListUsageEventsResponse{}
	if len(rows) > int(limit) {
		rows = rows[:limit]
		last := rows[len(rows)-1]
		b, _ := json.Marshal(eventCursor{T: last.Time, S: last.Source, ID: last.ID})
		resp.NextPageToken = pagination.Encode(string(b), fp)
	}
	for _, r := range rows {
		ev, err := eventToProto(r)
		if err != nil {
			return nil, err
		}
		resp.Events = append(resp.Events, ev)
	}
	return resp, nil
}

func eventToProto(e store.Event) (*usagev1.UsageEvent, error) {
	q := e.Quantity
	out := &usagev1.UsageEvent{
		Id: e.ID, Source: e.Source, Type: e.Type, Quantity: &q,
		EventTime: timestamppb.New(e.Time), CreateTime: timestamppb.New(e.CreateTime),
	}
	if e.IdentityID != uuid.Nil {
		out.IdentityId = e.IdentityID.String()
	}
	if len(e.Properties) > 0 && string(e.Properties) != "{}" {
		props := &structpb.Struct{}
		if err := protojson.Unmarshal(e.Properties, props); err != nil {
			return nil, fmt.Errorf("decode properties of usage event %s: %w", e.ID, err)
		}
		out.Properties = props
	}
	return out, nil
}

// parseDay reads "YYYY-MM-DD" as a UTC day.
func parseDay(field, s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, apierr.Field(field, "must be a date YYYY-MM-DD")
	}
	return d, nil
}

func today(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

type dailyCursor struct {
	D  string    `json:"d"`
	T  string    `json:"t"`
	ID uuid.UUID `json:"i"`
}

func (s *usageServer) ListDailyUsage(ctx context.Context, req *usagev1.ListDailyUsageRequest) (*usagev1.ListDailyUsageResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	f := store.DailyFilter{Type: req.GetType(), SumIdentities: req.GetAggregateIdentities(), End: today(s.svc.now())}
	if req.GetEndDate() != "" {
		if f.End, err = parseDay("end_date", req.GetEndDate()); err != nil {
			return nil, err
		}
	}
	f.Start = f.End.AddDate(0, 0, -29)
	if req.GetStartDate() != "" {
		if f.Start, err = parseDay("start_date", req.GetStartDate()); err != nil {
			return nil, err
		}
	}
	if f.Start.After(f.End) {
		return nil, apierr.Field("start_date", "must not be after end_date")
	}
	if req.GetIdentityId() != "" {
		id, err := uuid.Parse(req.GetIdentityId())
		if err != nil {
			return nil, apierr.Field("identity_id", "must be a UUID")
		}
		f.IdentityID = &id
	}
	fp := pagination.Fingerprint("usage-daily", f.Type, f.IdentityID, f.Start, f.End, f.SumIdentities)
	raw, err := pagination.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	var after *store.DailyCursor
	if raw != "" {
		var c dailyCursor
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, apierr.Field("page_token", "is not a token this server issued")
		}
		d, err := time.Parse(time.DateOnly, c.D)
		if err != nil {
			return nil, apierr.Field("page_token", "is not a token this server issued")
		}
		after = &store.DailyCursor{Day: d, Type: c.T, IdentityID: c.ID}
	}
	limit := pagination.Size(req.GetPageSize())
	var rows []store.Daily
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListDaily(ctx, f, after, limit+1)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &usagev1.ListDailyUsageResponse{}
	if len(rows) > int(limit) {
		rows = rows[:limit]
		last := rows[len(rows)-1]
		b, _ := json.Marshal(dailyCursor{D: last.Day.Format(time.DateOnly), T: last.Type, ID: last.IdentityID})
		resp.NextPageToken = pagination.Encode(string(b), fp)
	}
	for _, r := range rows {
		resp.DailyUsage = append(resp.DailyUsage, dailyToProto(r))
	}
	return resp, nil
}

func dailyToProto(d store.Daily) *usagev1.DailyUsage {
	out := &usagev1.DailyUsage{
		Date: d.Day.Format(time.DateOnly), Type: d.Type, Quantity: d.Quantity, EventCount: d.EventCount,
		UpdateTime: timestamppb.New(d.UpdateTime),
	}
	if d.IdentityID != uuid.Nil {
		out.IdentityId = d.IdentityID.String()
	}
	return out
}

func (s *usageServer) GetUsageSummary(ctx context.Context, req *usagev1.GetUsageSummaryRequest) (*usagev1.GetUsageSummaryResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	days := int32(30)
	if req.Days != nil {
		days = req.GetDays()
	}
	if days < 1 || days > 365 {
		return nil, apierr.Field("days", "must be 1 to 365")
	}
	top := int(req.GetTopIdentitiesLimit())
	if top == 0 {
		top = 10
	}
	end := today(s.svc.now())
	key := fmt.Sprintf("%s|%d|%s|%d|%s", tenant, days, req.GetType(), top, end.Format(time.DateOnly))
	return s.svc.summaries.get(ctx, key, func(ctx context.Context) (*usagev1.GetUsageSummaryResponse, error) {
		start := end.AddDate(0, 0, -int(days)+1)
		prevStart := start.AddDate(0, 0, -int(days))
		var cur, prev store.Summary
		err := s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) (err error) {
			cur, prev, err = tx.Summarize(ctx, prevStart, start, end, req.GetType(), top)
			return err
		})
		if err != nil {
			return nil, err
		}
		return summaryToProto(cur, prev, start, end, days), nil
	})
}

func summaryToProto(cur, prev store.Summary, start, end time.Time, days int32) *usagev1.GetUsageSummaryResponse {
	prevBy := make(map[string]int64, len(prev.Types))
	for _, t := range prev.Types {
		prevBy[t.Type] = t.Quantity
	}
	resp := &usagev1.GetUsageSummaryResponse{
		StartDate: start.Format(time.DateOnly), EndDate: end.Format(time.DateOnly), Days: days,
		ActiveIdentityCount: cur.ActiveIdentity, PreviousActiveIdentityCount: prev.ActiveIdentity,
	}
	seen := map[string]bool{}
	for _, t := range cur.Types {
		seen[t.Type] = true
		ts := &usagev1.UsageTypeSummary{Type: t.Type, Quantity: t.Quantity, EventCount: t.EventCount, PreviousQuantity: prevBy[t.Type]}
		if p := prevBy[t.Type]; p > 0 {
			r := float64(t.Quantity-p) / float64(p)
			ts.ChangeRatio = &r
		}
		for _, d := range t.Top {
			ts.TopIdentities = append(ts.TopIdentities, &usagev1.UsageIdentityTotal{IdentityId: d.IdentityID.String(), Quantity: d.Quantity, EventCount: d.EventCount})
		}
		resp.Types = append(resp.Types, ts)
	}
	// Types used only in the previous period show a drop to zero.
	for _, t := range prev.Types {
		if !seen[t.Type] {
			r := -1.0
			resp.Types = append(resp.Types, &usagev1.UsageTypeSummary{Type: t.Type, PreviousQuantity: t.Quantity, ChangeRatio: &r})
		}
	}
	slices.SortFunc(resp.GetTypes(), func(a, b *usagev1.UsageTypeSummary) int { return strings.Compare(a.GetType(), b.GetType()) })
	return resp
}

func (s *usageServer) AggregateUsage(ctx context.Context, req *usagev1.AggregateUsageRequest) (*usagev1.AggregateUsageResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	start, err := parseDay("start_date", req.GetStartDate())
	if err != nil {
		return nil, err
	}
	end, err := parseDay("end_date", req.GetEndDate())
	if err != nil {
		return nil, err
	}
	if end.Sub(start) > 366*24*time.Hour {
		return nil, apierr.Field("end_date", "a range spans at most 366 days")
	}
	var up, del int64
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		up, del, err = tx.Aggregate(ctx, tenant, start, end, req.GetTypes())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &usagev1.AggregateUsageResponse{RowsUpdated: up, RowsDeleted: del}, nil
}
