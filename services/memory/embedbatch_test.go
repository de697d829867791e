package memory

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// TestLongTextsEmbedInSeveralCalls: a burst of long memories (20 of 96 kB,
// about 1.9 MB of text, more than one gRPC message of the embedding service
// may carry) is embedded in calls small enough to pass, and every memory
// becomes ready. Before, the embedder sent up to 64 texts per call whatever
// their size: 16 of these 20 failed with ResourceExhausted, again on each retry.
func TestLongTextsEmbedInSeveralCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var items []*memoryv1.CreateMemoryRequest
	for i := range 20 {
		items = append(items, &memoryv1.CreateMemoryRequest{
			Text: fmt.Sprintf("long note %d: ", i) + strings.Repeat(fmt.Sprintf("word%d ", i), 96000/7),
		})
	}
	resp, err := b.client.BulkCreateMemories(as("user1"), &memoryv1.BulkCreateMemoriesRequest{Memories: items})
	require.NoError(t, err)
	require.Len(t, resp.GetResults(), 20)
	var ready, failed int
	require.Eventually(t, func() bool {
		require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE embedding_status = 2), count(*) FILTER (WHERE embedding_status = 3)
FROM memory.memories WHERE tenant_id = $1`, b.tenantA).Scan(&ready, &failed))
		return ready+failed == 20
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, 20, ready, "failed: %d", failed)
	require.GreaterOrEqual(t, b.embedder.calls.Load(), int64(4), "about 1.9 MB of text in calls of at most 512 KiB")
}
