package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/pagination"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/services/webhooks/store/sqlc"
)

func eventToProto(r sqlc.WebhooksEvent) (*eventsv1.Event, error) {
	e := &eventsv1.Event{
		Id: r.ID.String(), Type: r.Type, Source: r.Source, Subject: r.Subject, TenantId: r.TenantID.String(),
		EventTime: timestamppb.New(r.EventTime), RequestId: r.RequestID, Test: r.Test,
	}
	if r.IdentityID != nil {
		e.IdentityId = r.IdentityID.String()
	}
	if len(r.Data) > 0 {
		var m map[string]any
		if err := json.Unmarshal(r.Data, &m); err == nil {
			s, err := structpb.NewStruct(m)
			if err != nil {
				return nil, apierr.Internal(fmt.Errorf("event %s data: %w", r.ID, err))
			}
			e.Data = s
		} else {
			// Data that is not an object is wrapped so it still reaches the caller.
			var v any
			_ = json.Unmarshal(r.Data, &v)
			s, _ := structpb.NewStruct(map[string]any{"value": v})
			e.Data = s
		}
	}
	return e, nil
}

// endpointToProto never includes the secret.
func (s *Service) endpointToProto(ctx context.Context, r sqlc.WebhooksEndpoint) (*webhooksv1.Webhook, error) {
	h, err := s.customHeaders(ctx, r)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	w := &webhooksv1.Webhook{
		Id: r.ID.String(), TenantId: r.TenantID.String(), Name: r.Name, Url: r.Url, Events: r.Events,
		Description: r.Description, Enabled: r.Enabled, Headers: h, RateLimitPerSecond: r.RateLimitPerSecond,
		Ordered: r.Ordered, DisabledReason: webhooksv1.WebhookDisabledReason(r.DisabledReason),
		CreateTime: timestamppb.New(r.CreateTime), UpdateTime: timestamppb.New(r.UpdateTime),
	}
	if r.PreviousSecretExpireTime != nil && r.PreviousSecretExpireTime.After(s.now()) {
		w.PreviousSecretExpireTime = timestamppb.New(*r.PreviousSecretExpireTime)
	}
	return w, nil
}

func deliveryToProto(r sqlc.WebhooksDelivery) *webhooksv1.WebhookDelivery {
	d := &webhooksv1.WebhookDelivery{
		Id: r.ID.String(), WebhookId: r.WebhookID.String(), EventId: r.EventID.String(), EventType: r.EventType,
		Status: webhooksv1.WebhookDeliveryStatus(r.Status), AttemptCount: r.AttemptCount,
		LastResponseStatusCode: r.LastStatusCode, LastError: r.LastError, LastAttemptTime: tsOrNil(r.LastAttemptTime),
		Replay: r.Replay, CreateTime: timestamppb.New(r.CreateTime), UpdateTime: timestamppb.New(r.UpdateTime),
	}
	if r.Status == statusPending || r.Status == statusRetrying {
		d.NextAttemptTime = tsOrNil(r.NextAttemptTime)
	}
	return d
}

func attemptToProto(r sqlc.WebhooksAttempt) *webhooksv1.WebhookAttempt {
	a := &webhooksv1.WebhookAttempt{
		AttemptNumber: r.AttemptNumber, RequestBody: r.RequestBody, RequestBodyTruncated: r.RequestBodyTruncated,
		ResponseStatusCode: r.ResponseStatusCode, ResponseBody: r.ResponseBody, ResponseBodyTruncated: r.ResponseBodyTruncated,
		Latency: durationpbOf(time.Duration(r.LatencyUs) * time.Microsecond), Error: r.Error,
		StartTime: timestamppb.New(r.StartTime),
	}
	_ = json.Unmarshal(r.RequestHeaders, &a.RequestHeaders)
	_ = json.Unmarshal(r.ResponseHeaders, &a.ResponseHeaders)
	return a
}

// keyset cursors: "<unix nanos>|<uuid>".
func encodeCursor(t time.Time, id uuid.UUID, fp string) string {
	return pagination.Encode(fmt.Sprintf("%d|%s", t.UnixNano(), id), fp)
}

func decodeCursor(token, fp string) (*time.Time, *uuid.UUID, error) {
	c, err := pagination.Decode(token, fp)
	if err != nil || c == "" {
		return nil, nil, err
	}
	ns, idStr, ok := strings.Cut(c, "|")
	id, idErr := uuid.Parse(idStr)
	var n int64
	_, scanErr := fmt.Sscan(ns, &n)
	if !ok || idErr != nil || scanErr != nil {
		return nil, nil, apierr.Field("page_token", "is not a token this server issued")
	}
	t := time.Unix(0, n).UTC()
	return &t, &id, nil
}

func optTime(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime()
	return &t
}

func optUUID(field, s string) (*uuid.UUID, error) {
	if s == "" {
		return nil, nil
	}
	id, err := parseID(field, s)
	if err != nil {
		return nil, err
	}
	return &id, nil
}
