package webhooks_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/services/webhooks"
)

func TestEventAPIs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	types, err := b.events.ListEventTypes(as(tenantA), &eventsv1.ListEventTypesRequest{Area: "memory"})
	require.NoError(t, err)
	require.Len(t, types.GetEventTypes(), 5)
	for _, et := range types.GetEventTypes() {
		require.Equal(t, "object", et.GetDataSchema().GetFields()["type"].GetStringValue())
		require.NotEmpty(t, et.GetDescription())
	}

	rc := newReceiver(t, nil)
	hook := b.createWebhook(t, tenantA, rc.URL, "test.*")
	data, _ := structpb.NewStruct(map[string]any{"hello": "world"})
	sent, err := b.events.SendTestEvent(as(tenantA), &eventsv1.SendTestEventRequest{Type: "test.ping", Data: data})
	require.NoError(t, err)
	require.True(t, sent.GetEvent().GetTest())
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	verify(t, hook.GetSecret(), rc.all()[0])

	_, err = b.events.SendTestEvent(as(tenantA), &eventsv1.SendTestEventRequest{Type: "Nope"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, err.Error(), "type")

	stats, err := b.events.GetEventStats(as(tenantA), &eventsv1.GetEventStatsRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 1, stats.GetTotalCount())
	require.Equal(t, "test.ping", stats.GetTypeCounts()[0].GetType())

	// Replay sends the range again as new deliveries, even those that succeeded.
	replay, err := b.hooks.ReplayWebhook(as(tenantA), &webhooksv1.ReplayWebhookRequest{
		Id: hook.GetId(), StartTime: timestamppb.New(time.Now().Add(-time.Hour)), EndTime: timestamppb.New(time.Now().Add(time.Hour)),
		IncludeSucceeded: true,
	})
	require.NoError(t, err)
	// Test events are not replayed.
	require.EqualValues(t, 0, replay.GetQueuedCount())

	dry, err := b.events.CleanupEvents(as(tenantA), &eventsv1.CleanupEventsRequest{OlderThanDays: 1, DryRun: true})
	require.NoError(t, err)
	require.EqualValues(t, 0, dry.GetRemovedCount())
	_, err = b.events.CleanupEvents(as(tenantA), &eventsv1.CleanupEventsRequest{OlderThanDays: 0})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestReplayAndManualRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) { c.RetrySchedule = []time.Duration{0} })
	var ok atomic.Bool
	rc := newReceiver(t, func(*http.Request, int) int {
		if ok.Load() {
			return http.StatusOK
		}
		return http.StatusBadGateway
	})
	hook := b.createWebhook(t, tenantA, rc.URL, "identity.*")
	ev := b.publish(t, tenantA, "identity.created", map[string]any{})
	var dead *webhooksv1.WebhookDelivery
	require.Eventually(t, func() bool {
		l, err := b.hooks.ListWebhookDeliveries(as(tenantA), &webhooksv1.ListWebhookDeliveriesRequest{
			WebhookId: hook.GetId(), Status: webhooksv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD,
		})
		if err != nil || len(l.GetDeliveries()) != 1 {
			return false
		}
		dead = l.GetDeliveries()[0]
		return true
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, ev.ID, dead.GetEventId())
	ok.Store(true)

	_, err := b.hooks.RetryWebhookDelivery(as(tenantA), &webhooksv1.RetryWebhookDeliveryRequest{WebhookId: hook.GetId(), Id: dead.GetId()})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		d, err := b.hooks.GetWebhookDelivery(as(tenantA), &webhooksv1.GetWebhookDeliveryRequest{WebhookId: hook.GetId(), Id: dead.GetId()})
		return err == nil && d.GetDelivery().GetStatus() == webhooksv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_SUCCEEDED && len(d.GetAttempts()) == 2
	}, 10*time.Second, 20*time.Millisecond)
	_, err = b.hooks.RetryWebhookDelivery(as(tenantA), &webhooksv1.RetryWebhookDeliveryRequest{WebhookId: hook.GetId(), Id: dead.GetId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))

	// Replay skips what already succeeded unless asked.
	rng := func(all bool) *webhooksv1.ReplayWebhookRequest {
		return &webhooksv1.ReplayWebhookRequest{Id: hook.GetId(), StartTime: timestamppb.New(time.Now().Add(-time.Hour)),
			EndTime: timestamppb.New(time.Now().Add(time.Hour)), IncludeSucceeded: all}
	}
	require.Eventually(t, func() bool {
		_, err := b.events.GetEvent(as(tenantA), &eventsv1.GetEventRequest{Id: ev.ID})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	r, err := b.hooks.ReplayWebhook(as(tenantA), rng(false))
	require.NoError(t, err)
	require.EqualValues(t, 0, r.GetQueuedCount())
	r, err = b.hooks.ReplayWebhook(as(tenantA), rng(true))
	require.NoError(t, err)
	require.EqualValues(t, 1, r.GetQueuedCount())
	require.Eventually(t, func() bool { return len(rc.all()) == 3 }, 10*time.Second, 10*time.Millisecond)
}

// Retention drops whole day partitions of events and attempts.
func TestRetentionDropsPartitions(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	b := setup(t, func(c *webhooks.Config) {
		c.Now = func() time.Time { return time.Now().UTC().Add(time.Duration(offset.Load())) }
	})
	rc := newReceiver(t, nil)
	hook := b.createWebhook(t, tenantA, rc.URL, "*")
	ev := b.publish(t, tenantA, "identity.created", map[string]any{})
	require.Eventually(t, func() bool {
		st, err := b.hooks.GetWebhookStats(as(tenantA), &webhooksv1.GetWebhookStatsRequest{Id: hook.GetId()})
		_, gerr := b.events.GetEvent(as(tenantA), &eventsv1.GetEventRequest{Id: ev.ID})
		return err == nil && st.GetStats().GetAttemptCount() == 1 && gerr == nil
	}, 10*time.Second, 20*time.Millisecond)

	n, err := b.mod.Service().DropExpiredPartitions(t.Context())
	require.NoError(t, err)
	require.Zero(t, n, "nothing is past retention yet")
	offset.Store(int64(32 * 24 * time.Hour))
	n, err = b.mod.Service().DropExpiredPartitions(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, n, "today's events and attempts partitions")
	_, err = b.events.GetEvent(as(tenantA), &eventsv1.GetEventRequest{Id: ev.ID})
	require.Equal(t, codes.NotFound, status.Code(err))
}
