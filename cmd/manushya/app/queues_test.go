package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

// TestMonitoringQueues checks the operators' view of the work queues besides the
// outboxes: webhook deliveries to a dead receiver wait in the delivery queue, and
// memories whose embedding service is unreachable wait (failed) in the embedding
// queue; ListQueues over REST and the manushya_queue_* gauges on /metrics report
// both.
func TestMonitoringQueues(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// No embedding service in this process, and its address refuses connections.
	a := s.start(t, "identity,policy,memory,webhooks,usage,gateway",
		"MANUSHYA_SERVICES_EMBEDDING_ADDR=127.0.0.1:9", "MANUSHYA_WEBHOOKS_ALLOWED_ADDRESSES=127.0.0.0/8")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "queues", "Queues")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	admin := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)

	_, err = webhooksv1.NewWebhookServiceClient(tgt.GRPC).CreateWebhook(admin, &webhooksv1.CreateWebhookRequest{
		Name: "dead", Url: "http://127.0.0.1:9/hook", Events: []string{"identity.created"},
	})
	require.NoError(t, err)
	_, err = identityv1.NewIdentityServiceClient(tgt.GRPC).CreateIdentity(admin, &identityv1.CreateIdentityRequest{
		ExternalId: "queued@example.com", Role: "user",
	})
	require.NoError(t, err)
	_, err = memoryv1.NewMemoryServiceClient(tgt.GRPC).CreateMemory(admin, &memoryv1.CreateMemoryRequest{Text: "waits for its vector"})
	require.NoError(t, err)

	queue := func(name string) *adminv1.QueueDepth {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, tgt.RESTBase+"/v1/monitoring/queues", nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", boot.APIKey)
		resp, err := tgt.HTTPClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var out adminv1.ListQueuesResponse
		require.NoError(t, unmarshalProtoNames(body, &out))
		for _, q := range out.GetQueues() {
			if q.GetName() == name {
				return q
			}
		}
		return nil
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		hooks := queue("webhooks/deliveries")
		if assert.NotNil(c, hooks) {
			assert.Equal(c, adminv1.QueueKind_QUEUE_KIND_WEBHOOK_DELIVERIES, hooks.GetKind())
			assert.GreaterOrEqual(c, hooks.GetDepth(), int64(1), "the dead receiver's delivery waits for its retry")
		}
		emb := queue("memory/embedding")
		if assert.NotNil(c, emb) {
			assert.Equal(c, adminv1.QueueKind_QUEUE_KIND_EMBEDDING, emb.GetKind())
			assert.GreaterOrEqual(c, emb.GetDepth()+emb.GetFailedCount(), int64(1))
			assert.GreaterOrEqual(c, emb.GetFailedCount(), int64(1), "the unreachable embedding service fails the attempt")
		}
	}, 20*time.Second, 200*time.Millisecond)

	resp, err := tgt.HTTPClient.Get(tgt.RESTBase + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	var queueLines []string
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "manushya_queue_") {
			queueLines = append(queueLines, line)
		}
	}
	gauges := strings.Join(queueLines, "\n")
	require.Regexp(t, `manushya_queue_depth\{kind="webhook_deliveries",queue="webhooks/deliveries",service="webhooks"\} [1-9]`, gauges)
	require.Regexp(t, `manushya_queue_failed\{kind="embedding",queue="memory/embedding",service="memory"\} [1-9]`, gauges)
	require.Regexp(t, `manushya_queue_depth\{kind="outbox",queue="outbox/identity",service="identity"\} \d`, gauges)
}
