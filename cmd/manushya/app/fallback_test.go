package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/manushya-ai/manushya/pkg/embedder/embeddertest"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// TestEmbeddingProviderOutage is the embedding provider going down and coming
// back, end to end in one process: an OpenAI-compatible API (a local server)
// is the default provider and the hashing embedder its fallback. While the API
// answers 503 the circuit opens and the fallback embeds; the memory is READY
// with the fallback's model and found by a search embedded the same way. When
// the API is back, the memory service re-embeds the memory with the API's
// model without anyone asking, and searches use that model again.
func TestEmbeddingProviderOutage(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, "sk-test", "api-embed-384", 384)
	providers, err := json.Marshal([]map[string]any{
		{"name": "api", "type": "openai_compatible", "base_url": api.URL + "/v1", "api_key": "sk-test", "model": "api-embed-384",
			"dimensions": 384, "max_retries": 0, "timeout": "2s", "breaker_failures": 1, "breaker_cool_down": "1s"},
		{"name": "hashing", "type": "hashing", "dimensions": 384},
	})
	require.NoError(t, err)
	api.SetDown(&embeddertest.Failure{Status: http.StatusServiceUnavailable, Body: `{"error":{"message":"down"}}`})

	s := newStack(t)
	a := s.start(t, "all", "MANUSHYA_EMBEDDING_PROVIDERS="+string(providers), "MANUSHYA_MEMORY_SWEEP_INTERVAL=200ms")
	boot, err := a.Identity().Service().Bootstrap(context.Background(), "outage", "Outage")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	client := memoryv1.NewMemoryServiceClient(tgt.GRPC)
	ctx := metadata.AppendToOutgoingContext(context.Background(), apitest.APIKeyHeader, boot.APIKey)

	created, err := client.CreateMemory(ctx, &memoryv1.CreateMemoryRequest{Text: "the ferry to the island leaves at dawn", Wait: true})
	require.NoError(t, err)
	m := created.GetMemory()
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, m.GetEmbeddingStatus())
	require.Equal(t, "hashing-v1-384", m.GetEmbeddingModel(), "the fallback embedded it")
	found, err := client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Query: "ferry at dawn"})
	require.NoError(t, err)
	require.Equal(t, "hashing-v1-384", found.GetEmbeddingModel())
	require.Len(t, found.GetResults(), 1)

	// The API is back: after the circuit's cool-down and the job's backoff the
	// memory is re-embedded with the API's model.
	api.SetDown(nil)
	require.Eventually(t, func() bool {
		got, err := client.GetMemory(ctx, &memoryv1.GetMemoryRequest{Id: m.GetId()})
		require.NoError(t, err)
		return got.GetMemory().GetEmbeddingModel() == "api-embed-384"
	}, 30*time.Second, 100*time.Millisecond)
	found, err = client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Query: "ferry at dawn"})
	require.NoError(t, err)
	require.Equal(t, "api-embed-384", found.GetEmbeddingModel())
	require.Len(t, found.GetResults(), 1)
	require.Equal(t, m.GetId(), found.GetResults()[0].GetMemory().GetId())
}
