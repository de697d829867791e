package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/pagination"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	"github.com/manushya-ai/manushya/pkg/telemetry"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// eventServer implements EventService.
type eventServer struct {
	eventsv1.UnimplementedEventServiceServer
	svc *Service
}

type eventFilter struct {
	pageSize          int32
	pageToken, typ    string
	identity, subject string
	start, end        *timestamppb.Timestamp
}

func (s *Service) listEvents(ctx context.Context, f eventFilter) ([]*eventsv1.Event, string, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, "", err
	}
	fp := pagination.Fingerprint("events", f.typ, f.identity, f.subject, f.start.String(), f.end.String())
	beforeTime, beforeID, err := decodeCursor(f.pageToken, fp)
	if err != nil {
		return nil, "", err
	}
	identity, err := optUUID("identity_id", f.identity)
	if err != nil {
		return nil, "", err
	}
	exact, prefix := typeFilter(f.typ)
	params := sqlc.ListEventsParams{
		BeforeTime: beforeTime, BeforeID: beforeID, Type: exact, TypePrefix: prefix, IdentityID: identity,
		StartTime: optTime(f.start), EndTime: optTime(f.end), PageLimit: pagination.Size(f.pageSize) + 1,
	}
	if f.subject != "" {
		params.Subject = &f.subject
	}
	var rows []sqlc.WebhooksEvent
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListEvents(ctx, params)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		last := rows[len(rows)-1]
		next = encodeCursor(last.EventTime, last.ID, fp)
	}
	out := make([]*eventsv1.Event, 0, len(rows))
	for _, r := range rows {
		e, err := eventToProto(r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, e)
	}
	return out, next, nil
}

func (s *eventServer) ListEvents(ctx context.Context, req *eventsv1.ListEventsRequest) (*eventsv1.ListEventsResponse, error) {
	evs, next, err := s.svc.listEvents(ctx, eventFilter{
		pageSize: req.GetPageSize(), pageToken: req.GetPageToken(), typ: req.GetType(), identity: req.GetIdentityId(),
		subject: req.GetSubject(), start: req.GetStartTime(), end: req.GetEndTime(),
	})
	if err != nil {
		return nil, err
	}
	return &eventsv1.ListEventsResponse{Events: evs, NextPageToken: next}, nil
}

func (s *eventServer) ListIdentityEvents(ctx context.Context, req *eventsv1.ListIdentityEventsRequest) (*eventsv1.ListIdentityEventsResponse, error) {
	if _, err := parseID("identity_id", req.GetIdentityId()); err != nil {
		return nil, err
	}
	evs, next, err := s.svc.listEvents(ctx, eventFilter{
		pageSize: req.GetPageSize(), pageToken: req.GetPageToken(), typ: req.GetType(), identity: req.GetIdentityId(),
		start: req.GetStartTime(), end: req.GetEndTime(),
	})
	if err != nil {
		return nil, err
	}
	return &eventsv1.ListIdentityEventsResponse{Events: evs, NextPageToken: next}, nil
}

func (s *eventServer) GetEvent(ctx context.Context, req *eventsv1.GetEventRequest) (*eventsv1.GetEventResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	var row sqlc.WebhooksEvent
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetEvent(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.NotFound("event", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	e, err := eventToProto(row)
	if err != nil {
		return nil, err
	}
	return &eventsv1.GetEventResponse{Event: e}, nil
}

func (s *eventServer) ListEventTypes(_ context.Context, req *eventsv1.ListEventTypesRequest) (*eventsv1.ListEventTypesResponse, error) {
	types, err := eventTypes(req.GetArea())
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return &eventsv1.ListEventTypesResponse{EventTypes: types}, nil
}

const dateLayout = "2006-01-02"

func (s *eventServer) GetEventStats(ctx context.Context, req *eventsv1.GetEventStatsRequest) (*eventsv1.GetEventStatsResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	end := s.svc.now().UTC().Truncate(24 * time.Hour)
	if req.GetEndDate() != "" {
		if end, err = time.Parse(dateLayout, req.GetEndDate()); err != nil {
			return nil, apierr.Field("end_date", "must be a date YYYY-MM-DD")
		}
	}
	start := end.AddDate(0, 0, -6)
	if req.GetStartDate() != "" {
		if start, err = time.Parse(dateLayout, req.GetStartDate()); err != nil {
			return nil, apierr.Field("start_date", "must be a date YYYY-MM-DD")
		}
	}
	if start.After(end) {
		return nil, apierr.Field("start_date", "must not be after end_date")
	}
	if end.Sub(start) > 366*24*time.Hour {
		return nil, apierr.Field("start_date", "range must be at most 366 days")
	}
	exact, prefix := typeFilter(req.GetType())
	var rows []sqlc.EventDailyCountsRow
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.EventDailyCounts(ctx, sqlc.EventDailyCountsParams{
			StartTime: start, EndTime: end.AddDate(0, 0, 1), Type: exact, TypePrefix: prefix,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &eventsv1.GetEventStatsResponse{StartDate: start.Format(dateLayout), EndDate: end.Format(dateLayout)}
	perType := map[string]int64{}
	for _, r := range rows {
		resp.DailyCounts = append(resp.DailyCounts, &eventsv1.EventTypeDailyCount{Date: r.Day, Type: r.Type, Count: r.Count})
		perType[r.Type] += r.Count
		resp.TotalCount += r.Count
	}
	for t, c := range perType {
		resp.TypeCounts = append(resp.TypeCounts, &eventsv1.EventTypeCount{Type: t, Count: c})
	}
	counts := resp.GetTypeCounts()
	sort.Slice(counts, func(i, j int) bool {
		a, b := counts[i], counts[j]
		return a.GetCount() > b.GetCount() || (a.GetCount() == b.GetCount() && a.GetType() < b.GetType())
	})
	resp.ConsumerOutcomes = s.svc.consumerOutcomes(ctx)
	return resp, nil
}

// consumerOutcomes reports the bus consumers' counters. JetStream keeps them per
// consumer, not per tenant or range, so they describe the whole stream.
func (s *Service) consumerOutcomes(ctx context.Context) []*eventsv1.EventConsumerOutcome {
	if s.bus == nil {
		return nil
	}
	var out []*eventsv1.EventConsumerOutcome
	lister := s.bus.JS
	st, err := lister.Stream(ctx, s.bus.StreamName())
	if err != nil {
		return nil
	}
	names := st.ConsumerNames(ctx)
	for name := range names.Name() {
		c, err := st.Consumer(ctx, name)
		if err != nil {
			continue
		}
		info := c.CachedInfo()
		out = append(out, &eventsv1.EventConsumerOutcome{
			Consumer: name, DeliveredCount: int64(info.AckFloor.Stream), PendingCount: int64(info.NumAckPending) + int64(info.NumPending),
			RedeliveredCount: int64(info.NumRedelivered),
		})
	}
	slices.SortFunc(out, func(a, b *eventsv1.EventConsumerOutcome) int {
		if a.GetConsumer() < b.GetConsumer() {
			return -1
		}
		return 1
	})
	return out
}

func (s *eventServer) CleanupEvents(ctx context.Context, req *eventsv1.CleanupEventsRequest) (*eventsv1.CleanupEventsResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetOlderThanDays() < 1 || req.GetOlderThanDays() > 3650 {
		return nil, apierr.Field("older_than_days", "must be between 1 and 3650")
	}
	cutoff := s.svc.now().AddDate(0, 0, -int(req.GetOlderThanDays()))
	var n int64
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		if req.GetDryRun() {
			n, err = tx.CountEventsBefore(ctx, cutoff)
			return err
		}
		// One tenant's cleanup is a delete limited by partition pruning; the
		// service-wide retention drops whole partitions (DropExpiredPartitions).
		n, err = tx.DeleteEventsBefore(ctx, cutoff)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &eventsv1.CleanupEventsResponse{RemovedCount: n}, nil
}

func (s *eventServer) SendTestEvent(ctx context.Context, req *eventsv1.SendTestEventRequest) (*eventsv1.SendTestEventResponse, error) {
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := bus.ValidateType(req.GetType()); err != nil {
		return nil, apierr.Field("type", "must be <area>.<event> in lowercase dotted words")
	}
	data := []byte("{}")
	if req.GetData() != nil {
		if data, err = req.GetData().MarshalJSON(); err != nil {
			return nil, apierr.Field("data", "is not a JSON object")
		}
	}
	ev, err := bus.NewEvent(tenant.String(), req.GetType(), Source, req.GetSubject(), json.RawMessage(data))
	if err != nil {
		return nil, apierr.Internal(err)
	}
	var identity *uuid.UUID
	if u, err := uuid.Parse(p.IdentityID); err == nil {
		identity = &u
	}
	id := uuid.MustParse(ev.ID)
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		if err := s.svc.ensurePartition(ctx, tx, store.TableEvents, ev.Time); err != nil {
			return err
		}
		// Stored here, marked as a test, before the event store consumer sees it.
		if _, err := tx.InsertEvent(ctx, sqlc.InsertEventParams{
			ID: id, TenantID: tenant, Type: ev.Type, Source: ev.Source, Subject: ev.Subject, IdentityID: identity,
			RequestID: telemetry.RequestID(ctx), Test: true, EventTime: ev.Time, Data: data,
		}); err != nil {
			return err
		}
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		return nil, fmt.Errorf("send test event: %w", err)
	}
	var row sqlc.WebhooksEvent
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetEvent(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	e, err := eventToProto(row)
	if err != nil {
		return nil, err
	}
	return &eventsv1.SendTestEventResponse{Event: e}, nil
}

// RetryEvent hands the stored event again to the consumers this service runs
// (event-store, webhook-dispatcher); both are idempotent on event id.
func (s *eventServer) RetryEvent(ctx context.Context, req *eventsv1.RetryEventRequest) (*eventsv1.RetryEventResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	own := []string{ConsumerDispatcher, ConsumerEventStore}
	targets := own
	if len(req.GetConsumers()) > 0 {
		targets = nil
		for _, c := range req.GetConsumers() {
			if !slices.Contains(own, c) {
				return nil, apierr.Field("consumers", "consumer %q cannot be retried from here (known: %v)", c, own)
			}
			targets = append(targets, c)
		}
	}
	var row sqlc.WebhooksEvent
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetEvent(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.NotFound("event", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	ev := bus.Event{ID: row.ID.String(), Tenant: row.TenantID.String(), Type: row.Type, Source: row.Source,
		Subject: row.Subject, Time: row.EventTime, Data: row.Data}
	for _, c := range targets {
		if c == ConsumerDispatcher {
			if err := s.svc.dispatchEvents(ctx, []bus.Event{ev}); err != nil {
				return nil, err
			}
		}
	}
	return &eventsv1.RetryEventResponse{Consumers: targets}, nil
}
