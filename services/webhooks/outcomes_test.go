package webhooks_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

// A burst of outcomes of one tenant, successes and failures of two endpoints
// mixed, is recorded in batches: every delivery ends with its own attempts in the
// log, numbered in order, and its status and count as if recorded one by one.
func TestBurstOfMixedOutcomesIsRecordedExactly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ok := newReceiver(t, nil)
	var mu sync.Mutex
	seen := map[string]bool{}
	// The flaky endpoint answers each delivery's first attempt with 500.
	flaky := newReceiver(t, func(r *http.Request, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("webhook-id")
		if seen[id] {
			return http.StatusNoContent
		}
		seen[id] = true
		return http.StatusInternalServerError
	})
	okHook := b.createWebhook(t, tenantA, ok.URL, "memory.*")
	flakyHook := b.createWebhook(t, tenantA, flaky.URL, "memory.*")
	const n = 60
	for range n {
		b.publish(t, tenantA, "memory.created", map[string]any{"text": "x"})
	}
	succeeded := func(id string) bool {
		resp, err := b.hooks.GetWebhookStats(as(tenantA), &webhooksv1.GetWebhookStatsRequest{Id: id})
		return err == nil && resp.GetStats().GetSucceededCount() == n
	}
	require.Eventually(t, func() bool { return succeeded(okHook.GetId()) && succeeded(flakyHook.GetId()) },
		15*time.Second, 20*time.Millisecond)

	for _, c := range []struct {
		hook     *webhooksv1.Webhook
		attempts int32
		codes    []int32
	}{
		{okHook, 1, []int32{200}},
		{flakyHook, 2, []int32{500, 204}},
	} {
		l, err := b.hooks.ListWebhookDeliveries(as(tenantA), &webhooksv1.ListWebhookDeliveriesRequest{WebhookId: c.hook.GetId(), PageSize: 1000})
		require.NoError(t, err)
		require.Len(t, l.GetDeliveries(), n)
		for _, dl := range l.GetDeliveries() {
			require.Equal(t, webhooksv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_SUCCEEDED, dl.GetStatus())
			require.Equal(t, c.attempts, dl.GetAttemptCount())
			require.Equal(t, c.codes[len(c.codes)-1], dl.GetLastResponseStatusCode())
			require.Empty(t, dl.GetLastError())
			require.Nil(t, dl.GetNextAttemptTime())
			got, err := b.hooks.GetWebhookDelivery(as(tenantA), &webhooksv1.GetWebhookDeliveryRequest{WebhookId: c.hook.GetId(), Id: dl.GetId()})
			require.NoError(t, err)
			require.Len(t, got.GetAttempts(), len(c.codes))
			for i, a := range got.GetAttempts() {
				require.Equal(t, int32(i+1), a.GetAttemptNumber())
				require.Equal(t, c.codes[i], a.GetResponseStatusCode())
				require.Equal(t, dl.GetId(), a.GetRequestHeaders()["Webhook-Id"])
			}
		}
	}
	require.Len(t, ok.distinctIDs(), n)
	require.Len(t, flaky.all(), 2*n, "no attempt is repeated once its success is recorded")
}
