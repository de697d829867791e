package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/pagination"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/services/webhooks/store"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

// webhookServer implements WebhookService.
type webhookServer struct {
	webhooksv1.UnimplementedWebhookServiceServer
	svc *Service
}

var (
	patternRe = regexp.MustCompile(`^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$`)
	headerRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)
	// Headers a caller may not set: the signature headers and what HTTP owns.
	reservedHeaders = []string{"webhook-id", "webhook-timestamp", "webhook-signature", "content-type",
		"content-length", "host", "user-agent", "transfer-encoding", "connection"}
)

// checkURL validates a webhook URL; literal addresses are checked against the
// SSRF policy now, names at every connection.
func (s *Service) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return apierr.Field("url", "must be an absolute http:// or https:// URL")
	}
	if len(raw) > 2048 {
		return apierr.Field("url", "must be at most 2048 characters")
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		if err := s.policy.check(a); err != nil {
			return apierr.Field("url", "points at an address webhooks may not reach (%s)", a)
		}
	}
	return nil
}

func checkEvents(events []string, required bool) error {
	if required && len(events) == 0 {
		return apierr.Field("events", "must name at least one event type or wildcard")
	}
	if len(events) > 100 {
		return apierr.Field("events", "must have at most 100 items")
	}
	for i, e := range events {
		if !patternRe.MatchString(e) {
			return apierr.Field(fmt.Sprintf("events[%d]", i), "%q is not an event type, an area wildcard like \"memory.*\" or \"*\"", e)
		}
	}
	return nil
}

func checkHeaders(h map[string]string) error {
	if len(h) > 20 {
		return apierr.Field("headers", "must have at most 20 entries")
	}
	for k, v := range h {
		if !headerRe.MatchString(k) {
			return apierr.Field("headers", "%q is not a valid header name", k)
		}
		if slices.Contains(reservedHeaders, strings.ToLower(k)) {
			return apierr.Field("headers", "%q cannot be overridden", k)
		}
		if len(v) > 2048 || strings.ContainsAny(v, "\r\n\x00") {
			return apierr.Field("headers", "value of %q must be at most 2048 characters on one line", k)
		}
	}
	return nil
}

func (s *Service) sealHeaders(ctx context.Context, tenant, id uuid.UUID, h map[string]string) ([]byte, error) {
	if len(h) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(h)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return s.sealer.Seal(ctx, headersRef(tenant, id), raw)
}

func (s *webhookServer) CreateWebhook(ctx context.Context, req *webhooksv1.CreateWebhookRequest) (*webhooksv1.CreateWebhookResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(req.GetName()); n == 0 || n > 200 {
		return nil, apierr.Field("name", "must be 1 to 200 characters")
	}
	if err := s.svc.checkURL(req.GetUrl()); err != nil {
		return nil, err
	}
	if err := checkEvents(req.GetEvents(), true); err != nil {
		return nil, err
	}
	if err := checkHeaders(req.GetHeaders()); err != nil {
		return nil, err
	}
	if r := req.GetRateLimitPerSecond(); r < 0 || r > 10000 {
		return nil, apierr.Field("rate_limit_per_second", "must be between 0 and 10000")
	}
	id := newID()
	secret, err := newSecret()
	if err != nil {
		return nil, apierr.Internal(err)
	}
	sealed, err := s.svc.sealer.Seal(ctx, secretRef(tenant, id), []byte(secret))
	if err != nil {
		return nil, apierr.Internal(err)
	}
	headers, err := s.svc.sealHeaders(ctx, tenant, id, req.GetHeaders())
	if err != nil {
		return nil, apierr.Internal(err)
	}
	enabled := req.Enabled == nil || req.GetEnabled()
	reason := int16(0)
	if !enabled {
		reason = int16(webhooksv1.WebhookDisabledReason_WEBHOOK_DISABLED_REASON_MANUAL)
	}
	var row sqlc.WebhooksEndpoint
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.CreateEndpoint(ctx, sqlc.CreateEndpointParams{
			ID: id, TenantID: tenant, Name: req.GetName(), Url: req.GetUrl(), Events: req.GetEvents(),
			Description: req.GetDescription(), Enabled: enabled, Headers: headers,
			RateLimitPerSecond: req.GetRateLimitPerSecond(), Ordered: req.GetOrdered(), Secret: sealed, DisabledReason: reason,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	w, err := s.svc.endpointToProto(ctx, row)
	if err != nil {
		return nil, err
	}
	w.Secret = secret
	return &webhooksv1.CreateWebhookResponse{Webhook: w}, nil
}

func (s *Service) getEndpoint(ctx context.Context, field, rawID string) (sqlc.WebhooksEndpoint, uuid.UUID, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return sqlc.WebhooksEndpoint{}, uuid.Nil, err
	}
	id, err := parseID(field, rawID)
	if err != nil {
		return sqlc.WebhooksEndpoint{}, uuid.Nil, err
	}
	var row sqlc.WebhooksEndpoint
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetEndpoint(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return row, tenant, apierr.NotFound("webhook", rawID)
	}
	return row, tenant, err
}

func (s *webhookServer) GetWebhook(ctx context.Context, req *webhooksv1.GetWebhookRequest) (*webhooksv1.GetWebhookResponse, error) {
	row, _, err := s.svc.getEndpoint(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	w, err := s.svc.endpointToProto(ctx, row)
	if err != nil {
		return nil, err
	}
	return &webhooksv1.GetWebhookResponse{Webhook: w}, nil
}

func (s *webhookServer) ListWebhookEventTypes(_ context.Context, req *webhooksv1.ListWebhookEventTypesRequest) (*webhooksv1.ListWebhookEventTypesResponse, error) {
	types, err := eventTypes(req.GetArea())
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return &webhooksv1.ListWebhookEventTypesResponse{EventTypes: types}, nil
}

func (s *webhookServer) ListWebhooks(ctx context.Context, req *webhooksv1.ListWebhooksRequest) (*webhooksv1.ListWebhooksResponse, error) {
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	fp := pagination.Fingerprint("webhooks", req.Enabled, req.GetEventType())
	bt, bid, err := decodeCursor(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	params := sqlc.ListEndpointsParams{BeforeTime: bt, BeforeID: bid, Enabled: req.Enabled, PageLimit: pagination.Size(req.GetPageSize()) + 1}
	if req.GetEventType() != "" {
		et := req.GetEventType()
		params.EventType = &et
	}
	var rows []sqlc.WebhooksEndpoint
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListEndpoints(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &webhooksv1.ListWebhooksResponse{}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodeCursor(last.CreateTime, last.ID, fp)
	}
	for _, r := range rows {
		w, err := s.svc.endpointToProto(ctx, r)
		if err != nil {
			return nil, err
		}
		resp.Webhooks = append(resp.Webhooks, w)
	}
	return resp, nil
}

func (s *webhookServer) UpdateWebhook(ctx context.Context, req *webhooksv1.UpdateWebhookRequest) (*webhooksv1.UpdateWebhookResponse, error) {
	in := req.GetWebhook()
	if in == nil {
		return nil, apierr.Field("webhook", "is required")
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, apierr.Field("update_mask", "must name the fields to change")
	}
	_, tenant, err := s.svc.getEndpoint(ctx, "webhook.id", in.GetId())
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(in.GetId())
	var row sqlc.WebhooksEndpoint
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		cur, err := tx.GetEndpointForUpdate(ctx, id)
		if err != nil {
			return err
		}
		p := sqlc.UpdateEndpointParams{
			ID: id, Name: cur.Name, Url: cur.Url, Events: cur.Events, Description: cur.Description, Enabled: cur.Enabled,
			Headers: cur.Headers, RateLimitPerSecond: cur.RateLimitPerSecond, Ordered: cur.Ordered,
			DisabledReason: cur.DisabledReason, FailingSince: cur.FailingSince,
		}
		for _, path := range paths {
			switch path {
			case "name":
				if n := len(in.GetName()); n == 0 || n > 200 {
					return apierr.Field("webhook.name", "must be 1 to 200 characters")
				}
				p.Name = in.GetName()
			case "url":
				if err := s.svc.checkURL(in.GetUrl()); err != nil {
					return apierr.Field("webhook.url", "must be an absolute http:// or https:// URL webhooks may reach")
				}
				p.Url = in.GetUrl()
			case "events":
				if err := checkEvents(in.GetEvents(), true); err != nil {
					return err
				}
				p.Events = in.GetEvents()
			case "description":
				if len(in.GetDescription()) > 1000 {
					return apierr.Field("webhook.description", "must be at most 1000 characters")
				}
				p.Description = in.GetDescription()
			case "enabled":
				p.Enabled = in.GetEnabled()
				if p.Enabled {
					p.DisabledReason, p.FailingSince = 0, nil
				} else if !cur.Enabled {
					p.DisabledReason = cur.DisabledReason
				} else {
					p.DisabledReason = int16(webhooksv1.WebhookDisabledReason_WEBHOOK_DISABLED_REASON_MANUAL)
				}
			case "headers":
				if err := checkHeaders(in.GetHeaders()); err != nil {
					return err
				}
				if p.Headers, err = s.svc.sealHeaders(ctx, tenant, id, in.GetHeaders()); err != nil {
					return err
				}
			case "rate_limit_per_second":
				if r := in.GetRateLimitPerSecond(); r < 0 || r > 10000 {
					return apierr.Field("webhook.rate_limit_per_second", "must be between 0 and 10000")
				}
				p.RateLimitPerSecond = in.GetRateLimitPerSecond()
			case "ordered":
				p.Ordered = in.GetOrdered()
			default:
				return apierr.Field("update_mask", "%q is not a field that can be updated", path)
			}
		}
		row, err = tx.UpdateEndpoint(ctx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	w, err := s.svc.endpointToProto(ctx, row)
	if err != nil {
		return nil, err
	}
	return &webhooksv1.UpdateWebhookResponse{Webhook: w}, nil
}

func (s *webhookServer) DeleteWebhook(ctx context.Context, req *webhooksv1.DeleteWebhookRequest) (*webhooksv1.DeleteWebhookResponse, error) {
	_, tenant, err := s.svc.getEndpoint(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.GetId())
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		// Deliveries and their queue rows go by cascade; attempts age out with
		// their partitions.
		_, err := tx.DeleteEndpoint(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &webhooksv1.DeleteWebhookResponse{}, nil
}

func (s *webhookServer) RotateWebhookSecret(ctx context.Context, req *webhooksv1.RotateWebhookSecretRequest) (*webhooksv1.RotateWebhookSecretResponse, error) {
	_, tenant, err := s.svc.getEndpoint(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	overlap := 24 * time.Hour
	if req.OverlapSeconds != nil {
		o := req.GetOverlapSeconds()
		if o < 0 || o > 7*24*3600 {
			return nil, apierr.Field("overlap_seconds", "must be between 0 and 604800")
		}
		overlap = time.Duration(o) * time.Second
	}
	id := uuid.MustParse(req.GetId())
	secret, err := newSecret()
	if err != nil {
		return nil, apierr.Internal(err)
	}
	sealed, err := s.svc.sealer.Seal(ctx, secretRef(tenant, id), []byte(secret))
	if err != nil {
		return nil, apierr.Internal(err)
	}
	var row sqlc.WebhooksEndpoint
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.RotateEndpointSecret(ctx, sqlc.RotateEndpointSecretParams{
			ID: id, Secret: sealed, PreviousExpireTime: s.svc.now().Add(overlap),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	w, err := s.svc.endpointToProto(ctx, row)
	if err != nil {
		return nil, err
	}
	w.Secret = secret
	return &webhooksv1.RotateWebhookSecretResponse{Webhook: w}, nil
}

func (s *webhookServer) ListWebhookDeliveries(ctx context.Context, req *webhooksv1.ListWebhookDeliveriesRequest) (*webhooksv1.ListWebhookDeliveriesResponse, error) {
	_, tenant, err := s.svc.getEndpoint(ctx, "webhook_id", req.GetWebhookId())
	if err != nil {
		return nil, err
	}
	fp := pagination.Fingerprint("deliveries", req.GetWebhookId(), req.GetStatus(), req.GetEventType(), req.GetEventId(),
		req.GetStartTime().String(), req.GetEndTime().String())
	bt, bid, err := decodeCursor(req.GetPageToken(), fp)
	if err != nil {
		return nil, err
	}
	eventID, err := optUUID("event_id", req.GetEventId())
	if err != nil {
		return nil, err
	}
	params := sqlc.ListDeliveriesParams{
		WebhookID: uuid.MustParse(req.GetWebhookId()), BeforeTime: bt, BeforeID: bid, EventID: eventID,
		StartTime: optTime(req.GetStartTime()), EndTime: optTime(req.GetEndTime()), PageLimit: pagination.Size(req.GetPageSize()) + 1,
	}
	if st := req.GetStatus(); st != webhooksv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_UNSPECIFIED {
		v := int16(st)
		params.Status = &v
	}
	if et := req.GetEventType(); et != "" {
		params.EventType = &et
	}
	var rows []sqlc.WebhooksDelivery
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		rows, err = tx.ListDeliveries(ctx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &webhooksv1.ListWebhookDeliveriesResponse{}
	if len(rows) == int(params.PageLimit) {
		rows = rows[:len(rows)-1]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodeCursor(last.CreateTime, last.ID, fp)
	}
	for _, r := range rows {
		resp.Deliveries = append(resp.Deliveries, deliveryToProto(r))
	}
	return resp, nil
}

func (s *Service) getDelivery(ctx context.Context, webhookID, id string) (sqlc.WebhooksDelivery, uuid.UUID, error) {
	_, tenant, err := s.getEndpoint(ctx, "webhook_id", webhookID)
	if err != nil {
		return sqlc.WebhooksDelivery{}, uuid.Nil, err
	}
	did, err := parseID("id", id)
	if err != nil {
		return sqlc.WebhooksDelivery{}, uuid.Nil, err
	}
	var row sqlc.WebhooksDelivery
	err = s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		row, err = tx.GetDelivery(ctx, did)
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.WebhookID.String() != webhookID) {
		return row, tenant, apierr.NotFound("delivery", id)
	}
	return row, tenant, err
}

func (s *webhookServer) GetWebhookDelivery(ctx context.Context, req *webhooksv1.GetWebhookDeliveryRequest) (*webhooksv1.GetWebhookDeliveryResponse, error) {
	row, tenant, err := s.svc.getDelivery(ctx, req.GetWebhookId(), req.GetId())
	if err != nil {
		return nil, err
	}
	var atts []sqlc.WebhooksAttempt
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		atts, err = tx.ListAttempts(ctx, row.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &webhooksv1.GetWebhookDeliveryResponse{Delivery: deliveryToProto(row)}
	for _, a := range atts {
		resp.Attempts = append(resp.Attempts, attemptToProto(a))
	}
	return resp, nil
}

func (s *webhookServer) RetryWebhookDelivery(ctx context.Context, req *webhooksv1.RetryWebhookDeliveryRequest) (*webhooksv1.RetryWebhookDeliveryResponse, error) {
	row, tenant, err := s.svc.getDelivery(ctx, req.GetWebhookId(), req.GetId())
	if err != nil {
		return nil, err
	}
	if row.Status == statusSucceeded || row.Status == statusPending {
		return nil, apierr.FailedPrecondition("delivery %s is %s; only failed, dead and retrying deliveries can be retried",
			row.ID, webhooksv1.WebhookDeliveryStatus(row.Status))
	}
	now := s.svc.now()
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		if err := tx.RescheduleDelivery(ctx, sqlc.RescheduleDeliveryParams{ID: row.ID, NextAttemptTime: &now}); err != nil {
			return err
		}
		if row, err = tx.GetDelivery(ctx, row.ID); err != nil {
			return err
		}
		_, err := tx.EnqueueDelivery(ctx, sqlc.EnqueueDeliveryParams{DeliveryID: row.ID, TenantID: tenant, WebhookID: row.WebhookID, EventTime: row.EventTime, NextAttemptTime: now})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.svc.deliverer.wake()
	return &webhooksv1.RetryWebhookDeliveryResponse{Delivery: deliveryToProto(row)}, nil
}

// maxReplay bounds one replay call.
const maxReplay = 10000

func (s *webhookServer) ReplayWebhook(ctx context.Context, req *webhooksv1.ReplayWebhookRequest) (*webhooksv1.ReplayWebhookResponse, error) {
	ep, tenant, err := s.svc.getEndpoint(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	if req.GetStartTime() == nil {
		return nil, apierr.Field("start_time", "is required")
	}
	if req.GetEndTime() == nil {
		return nil, apierr.Field("end_time", "is required")
	}
	start, end := req.GetStartTime().AsTime(), req.GetEndTime().AsTime()
	if !start.Before(end) {
		return nil, apierr.Field("start_time", "must be before end_time")
	}
	if err := checkEvents(req.GetEventTypes(), false); err != nil {
		return nil, err
	}
	var queued int64
	now := s.svc.now()
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		evs, err := tx.ListEventsInRange(ctx, sqlc.ListEventsInRangeParams{StartTime: start, EndTime: end})
		if err != nil {
			return err
		}
		if len(evs) > maxReplay {
			return apierr.FailedPrecondition("the range holds %d events; replay at most %d at a time", len(evs), maxReplay)
		}
		skip := map[uuid.UUID]bool{}
		if !req.GetIncludeSucceeded() {
			ids, err := tx.SucceededEventIDs(ctx, sqlc.SucceededEventIDsParams{WebhookID: ep.ID, StartTime: start, EndTime: end})
			if err != nil {
				return err
			}
			for _, id := range ids {
				skip[id] = true
			}
		}
		for _, e := range evs {
			if skip[e.ID] || !matchesAny(ep.Events, e.Type) ||
				(len(req.GetEventTypes()) > 0 && !matchesAny(req.GetEventTypes(), e.Type)) {
				continue
			}
			body, err := marshalBody(deliveryBody{Type: e.Type, Timestamp: e.EventTime, Data: e.Data, EventID: e.ID.String(),
				Subject: e.Subject, TenantID: e.TenantID.String()})
			if err != nil {
				return err
			}
			id := newID()
			if _, err := tx.CreateDelivery(ctx, sqlc.CreateDeliveryParams{
				ID: id, TenantID: tenant, WebhookID: ep.ID, EventID: e.ID, EventType: e.Type, EventTime: e.EventTime,
				Body: body, Status: statusPending, NextAttemptTime: &now, Replay: true,
			}); err != nil {
				return err
			}
			if _, err := tx.EnqueueDelivery(ctx, sqlc.EnqueueDeliveryParams{DeliveryID: id, TenantID: tenant, WebhookID: ep.ID, EventTime: e.EventTime, NextAttemptTime: now}); err != nil {
				return err
			}
			queued++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.svc.deliverer.wake()
	return &webhooksv1.ReplayWebhookResponse{QueuedCount: queued}, nil
}

// matchesAny reports whether eventType matches one of the subscription patterns.
func matchesAny(patterns []string, eventType string) bool {
	for _, p := range patternsFor(eventType) {
		if slices.Contains(patterns, p) {
			return true
		}
	}
	return false
}

func (s *webhookServer) GetWebhookStats(ctx context.Context, req *webhooksv1.GetWebhookStatsRequest) (*webhooksv1.GetWebhookStatsResponse, error) {
	ep, tenant, err := s.svc.getEndpoint(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	end := s.svc.now()
	if req.GetEndTime() != nil {
		end = req.GetEndTime().AsTime()
	}
	start := end.Add(-24 * time.Hour)
	if req.GetStartTime() != nil {
		start = req.GetStartTime().AsTime()
	}
	if !start.Before(end) {
		return nil, apierr.Field("start_time", "must be before end_time")
	}
	st := &webhooksv1.WebhookStats{WebhookId: ep.ID.String(), StartTime: timestamppbOf(start), EndTime: timestamppbOf(end)}
	err = s.svc.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		counts, err := tx.DeliveryStatusCounts(ctx, sqlc.DeliveryStatusCountsParams{WebhookID: ep.ID, StartTime: start, EndTime: end})
		if err != nil {
			return err
		}
		for _, c := range counts {
			st.TotalCount += c.Count
			switch c.Status {
			case statusPending:
				st.PendingCount = c.Count
			case statusSucceeded:
				st.SucceededCount = c.Count
			case statusFailed:
				st.FailedCount = c.Count
			case statusRetrying:
				st.RetryingCount = c.Count
			case statusDead:
				st.DeadCount = c.Count
			}
		}
		if done := st.GetSucceededCount() + st.GetFailedCount() + st.GetDeadCount(); done > 0 {
			st.SuccessRate = float64(st.GetSucceededCount()) / float64(done)
		}
		a, err := tx.AttemptStats(ctx, sqlc.AttemptStatsParams{WebhookID: ep.ID, StartTime: start, EndTime: end})
		if err != nil {
			return err
		}
		st.AttemptCount = a.Attempts
		st.P50Latency = durationpbOf(time.Duration(a.P50Us) * time.Microsecond)
		st.P95Latency = durationpbOf(time.Duration(a.P95Us) * time.Microsecond)
		if a.LastSuccess.Unix() > 0 {
			st.LastSuccessTime = timestamppbOf(a.LastSuccess)
		}
		if a.LastFailure.Unix() > 0 {
			st.LastFailureTime = timestamppbOf(a.LastFailure)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &webhooksv1.GetWebhookStatsResponse{Stats: st}, nil
}

func (s *webhookServer) TestWebhook(ctx context.Context, req *webhooksv1.TestWebhookRequest) (*webhooksv1.TestWebhookResponse, error) {
	ep, _, err := s.svc.getEndpoint(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	typ := req.GetEventType()
	if typ == "" {
		typ = "webhook.test"
	}
	data := []byte(`{"message":"test delivery"}`)
	if req.GetData() != nil {
		if data, err = req.GetData().MarshalJSON(); err != nil {
			return nil, apierr.Field("data", "is not a JSON object")
		}
	}
	now := s.svc.now()
	id := newID()
	body, err := marshalBody(deliveryBody{Type: typ, Timestamp: now, Data: data, EventID: id.String(), TenantID: ep.TenantID.String(), Test: true})
	if err != nil {
		return nil, apierr.Internal(err)
	}
	res, err := s.svc.deliverer.send(ctx, ep, id.String(), body)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	res.attempt.AttemptNumber = 1
	return &webhooksv1.TestWebhookResponse{Success: res.success(), Attempt: res.attempt}, nil
}
