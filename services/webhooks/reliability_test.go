package webhooks_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/manushya-ai/manushya/pkg/bus"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
	"github.com/manushya-ai/manushya/services/webhooks"
)

// A receiver that is down (503) and then comes back gets every event: the number
// of distinct webhook-ids equals the number of events.
func TestReceiverDownThenBackGetsEveryEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var up atomic.Bool
	rc := newReceiver(t, func(*http.Request, int) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	hook := b.createWebhook(t, tenantA, rc.URL, "memory.*")
	const n = 20
	for range n {
		b.publish(t, tenantA, "memory.created", map[string]any{"text": "x"})
	}
	// Every event is attempted at least twice while the receiver is down.
	require.Eventually(t, func() bool { return len(rc.distinctIDs()) == n && len(rc.all()) >= 2*n }, 10*time.Second, 10*time.Millisecond)
	up.Store(true)
	require.Eventually(t, func() bool {
		resp, err := b.hooks.GetWebhookStats(as(tenantA), &webhooksv1.GetWebhookStatsRequest{Id: hook.GetId()})
		return err == nil && resp.GetStats().GetSucceededCount() == n
	}, 10*time.Second, 20*time.Millisecond)
	require.Len(t, rc.distinctIDs(), n)
	for _, r := range rc.all() {
		verify(t, hook.GetSecret(), r)
	}
}

// A receiver that hangs does not hold back a healthy endpoint: the healthy one
// receives every event while the hanging one is still blocked on its first ones.
func TestHangingEndpointDoesNotDelayHealthyOne(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) { c.Timeout = 30 * time.Second })
	release := make(chan struct{})
	hang := newReceiver(t, func(r *http.Request, _ int) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(release) })
	healthy := newReceiver(t, nil)
	b.createWebhook(t, tenantA, hang.URL, "*")
	b.createWebhook(t, tenantA, healthy.URL, "*")
	const n = 50
	for range n {
		b.publish(t, tenantA, "identity.created", map[string]any{})
	}
	require.Eventually(t, func() bool { return len(healthy.distinctIDs()) == n }, 10*time.Second, 10*time.Millisecond)
	require.Less(t, len(hang.all()), n, "the hanging endpoint is still blocked")
}

// 410 Gone disables the endpoint and emits webhook.endpoint.disabled.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, func(*http.Request, int) int { return http.StatusGone })
	hook := b.createWebhook(t, tenantA, rc.URL, "identity.created")
	b.publish(t, tenantA, "identity.created", map[string]any{})
	require.Eventually(t, func() bool {
		got, err := b.hooks.GetWebhook(as(tenantA), &webhooksv1.GetWebhookRequest{Id: hook.GetId()})
		return err == nil && !got.GetWebhook().GetEnabled() &&
			got.GetWebhook().GetDisabledReason() == webhooksv1.WebhookDisabledReason_WEBHOOK_DISABLED_REASON_GONE
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		l, err := b.events.ListEvents(as(tenantA), &eventsv1.ListEventsRequest{Type: "webhook.endpoint.disabled"})
		return err == nil && len(l.GetEvents()) == 1 && l.GetEvents()[0].GetSubject() == hook.GetId()
	}, 10*time.Second, 20*time.Millisecond)
	require.Len(t, rc.all(), 1, "no further attempts after 410")

	// Re-enabling clears the reason.
	up, err := b.hooks.UpdateWebhook(as(tenantA), &webhooksv1.UpdateWebhookRequest{
		Webhook: &webhooksv1.Webhook{Id: hook.GetId(), Enabled: true}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"enabled"}},
	})
	require.NoError(t, err)
	require.True(t, up.GetWebhook().GetEnabled())
	require.Equal(t, webhooksv1.WebhookDisabledReason_WEBHOOK_DISABLED_REASON_UNSPECIFIED, up.GetWebhook().GetDisabledReason())
}

// An endpoint failing for longer than DisableAfter is disabled; the clock is the
// test's.
func TestFailingForDaysDisablesEndpoint(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	b := setup(t, func(c *webhooks.Config) {
		c.Now = func() time.Time { return time.Now().UTC().Add(time.Duration(offset.Load())) }
		c.RetrySchedule = []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond,
			10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond,
			10 * time.Millisecond, 10 * time.Millisecond}
	})
	var calls atomic.Int32
	rc := newReceiver(t, func(*http.Request, int) int {
		// The first failure starts the failing period; then the clock jumps past
		// five days.
		if calls.Add(1) == 2 {
			offset.Store(int64(6 * 24 * time.Hour))
		}
		return http.StatusInternalServerError
	})
	hook := b.createWebhook(t, tenantA, rc.URL, "*")
	b.publish(t, tenantA, "identity.created", map[string]any{})
	require.Eventually(t, func() bool {
		got, err := b.hooks.GetWebhook(as(tenantA), &webhooksv1.GetWebhookRequest{Id: hook.GetId()})
		return err == nil && got.GetWebhook().GetDisabledReason() == webhooksv1.WebhookDisabledReason_WEBHOOK_DISABLED_REASON_FAILING
	}, 10*time.Second, 20*time.Millisecond)
	_ = rc
}

// During a rotation's overlap each delivery carries both signatures, and each
// secret verifies on its own.
func TestRotationSignsWithBothSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	hook := b.createWebhook(t, tenantA, rc.URL, "identity.*")
	rot, err := b.hooks.RotateWebhookSecret(as(tenantA), &webhooksv1.RotateWebhookSecretRequest{Id: hook.GetId()})
	require.NoError(t, err)
	require.NotEqual(t, hook.GetSecret(), rot.GetWebhook().GetSecret())
	require.NotNil(t, rot.GetWebhook().GetPreviousSecretExpireTime())
	b.publish(t, tenantA, "identity.deleted", map[string]any{})
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	r := rc.all()[0]
	require.Len(t, strings.Fields(r.header.Get("webhook-signature")), 2)
	verify(t, hook.GetSecret(), r)
	verify(t, rot.GetWebhook().GetSecret(), r)
}

// Bad input names the field; private addresses are refused, at create time for
// literals and at connection time for everything.
func TestValidationAndSSRF(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) { c.AllowedAddresses = nil })
	for _, tc := range []struct{ url, field string }{
		{"http://169.254.169.254/latest/meta-data", "url"},
		{"http://10.0.0.1/hook", "url"},
		{"ftp://example.com/", "url"},
		{"http://[::1]:8080/", "url"},
	} {
		_, err := b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{Name: "x", Url: tc.url, Events: []string{"*"}})
		require.Equal(t, codes.InvalidArgument, status.Code(err), tc.url)
		require.Contains(t, err.Error(), tc.field)
	}
	_, err := b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{Name: "x", Url: "https://example.com/", Events: []string{"Memory"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{
		Name: "x", Url: "https://example.com/", Events: []string{"*"}, Headers: map[string]string{"webhook-signature": "x"},
	})
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	// A name that resolves to loopback passes registration and is refused when dialled.
	rc := newReceiver(t, nil)
	url := strings.Replace(rc.URL, "127.0.0.1", "localhost", 1)
	hook := b.createWebhook(t, tenantA, url, "*")
	res, err := b.hooks.TestWebhook(as(tenantA), &webhooksv1.TestWebhookRequest{Id: hook.GetId()})
	require.NoError(t, err)
	require.False(t, res.GetSuccess())
	require.Contains(t, res.GetAttempt().GetError(), "not allowed")
	require.Empty(t, rc.all())
}

// Redirects are not followed.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	target := newReceiver(t, nil)
	redirect := newReceiver(t, nil)
	redirect.Config.Handler = http.RedirectHandler(target.URL, http.StatusTemporaryRedirect)
	hook := b.createWebhook(t, tenantA, redirect.URL, "*")
	res, err := b.hooks.TestWebhook(as(tenantA), &webhooksv1.TestWebhookRequest{Id: hook.GetId()})
	require.NoError(t, err)
	require.False(t, res.GetSuccess())
	require.EqualValues(t, http.StatusTemporaryRedirect, res.GetAttempt().GetResponseStatusCode())
	require.Empty(t, target.all())
}

// Retries are persisted: a restarted module picks up a delivery whose retry was
// scheduled by the previous one.
func TestRetriesResumeAfterRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) {
		c.RetrySchedule = []time.Duration{0, 500 * time.Millisecond, time.Second}
	})
	var fail atomic.Bool
	fail.Store(true)
	rc := newReceiver(t, func(*http.Request, int) int {
		if fail.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	hook := b.createWebhook(t, tenantA, rc.URL, "*")
	b.publish(t, tenantA, "identity.created", map[string]any{})
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	b.stopOnce()
	fail.Store(false)

	mod, err := webhooks.New(webhooks.Config{AllowedAddresses: []string{"127.0.0.0/8"}, PollInterval: 20 * time.Millisecond,
		RetrySchedule: []time.Duration{0, 500 * time.Millisecond, time.Second}}, webhooks.Deps{Pool: b.db.Pool, Keyring: b.keyring})
	require.NoError(t, err)
	require.NoError(t, mod.Start(t.Context()))
	t.Cleanup(func() { _ = mod.Stop(t.Context()) })
	require.Eventually(t, func() bool {
		resp, err := b.hooks.ListWebhookDeliveries(as(tenantA), &webhooksv1.ListWebhookDeliveriesRequest{WebhookId: hook.GetId()})
		_ = resp
		return err == nil && len(rc.all()) == 2
	}, 10*time.Second, 20*time.Millisecond)
	require.Len(t, rc.distinctIDs(), 1)
}

// An ordered endpoint gets events in event order: a failing delivery holds back
// the later ones until it succeeds.
func TestOrderedEndpointHoldsBackLaterEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *webhooks.Config) {
		c.RetrySchedule = []time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond}
	})
	var mu sync.Mutex
	var okOrder []string
	rc := newReceiver(t, func(r *http.Request, n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		mu.Lock()
		okOrder = append(okOrder, r.Header.Get("webhook-id"))
		mu.Unlock()
		return http.StatusOK
	})
	resp, err := b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{Name: "ordered", Url: rc.URL, Events: []string{"*"}, Ordered: true})
	require.NoError(t, err)
	hook := resp.GetWebhook()
	first := b.publish(t, tenantA, "memory.created", map[string]any{})
	require.Eventually(t, func() bool { return len(rc.all()) >= 1 }, 10*time.Second, 5*time.Millisecond)
	events := []string{first.ID}
	for range 4 {
		events = append(events, b.publish(t, tenantA, "memory.created", map[string]any{}).ID)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(okOrder) == 5
	}, 10*time.Second, 10*time.Millisecond)
	// Map the webhook-ids back to events through the delivery log.
	l, err := b.hooks.ListWebhookDeliveries(as(tenantA), &webhooksv1.ListWebhookDeliveriesRequest{WebhookId: hook.GetId()})
	require.NoError(t, err)
	eventOf := map[string]string{}
	for _, d := range l.GetDeliveries() {
		eventOf[d.GetId()] = d.GetEventId()
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, id := range okOrder {
		got = append(got, eventOf[id])
	}
	require.Equal(t, events, got)
}

// NATS restarted mid-stream: every event published before and after reaches the
// receiver once per event.
func TestNATSRestartLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	b.createWebhook(t, tenantA, rc.URL, "*")
	for range 10 {
		b.publish(t, tenantA, "memory.created", map[string]any{})
	}
	port := b.nats.Port()
	b.nats.Shutdown()
	restarted, err := bus.StartEmbedded(b.natsDir, port)
	require.NoError(t, err)
	t.Cleanup(restarted.Shutdown)
	require.Eventually(t, func() bool { return b.bus.Conn.IsConnected() }, 10*time.Second, 10*time.Millisecond)
	for range 10 {
		b.publish(t, tenantA, "memory.created", map[string]any{})
	}
	require.Eventually(t, func() bool { return len(rc.distinctIDs()) == 20 }, 20*time.Second, 20*time.Millisecond)
}
