package memory

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// TestScoresAreCosines: with a provider whose vectors are not unit length (here
// 7 times too long) and a query vector of another length, scores are the
// cosine similarities, in order, and a threshold of 1 keeps the memory of the
// query's direction (rounding must not drop it). Both query shapes are
// checked, the exact scan (an identity's scope) and the graph plus fresh rows
// (tenant-wide, with a tiny exact-scan limit), before and after the indexer.
func TestScoresAreCosines(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{cfg: Config{ExactScanRows: 5}})
	ctx := context.Background()
	b.embedder.scale.Store(math.Float32bits(7))

	texts := make([]string, 12)
	var items []*memoryv1.CreateMemoryRequest
	for i := range texts {
		texts[i] = fmt.Sprintf("harbour note %d: the %s boat leaves at %d", i, []string{"red", "blue", "green"}[i%3], i+6)
		items = append(items, &memoryv1.CreateMemoryRequest{Text: texts[i], IdentityId: b.user1.String()})
	}
	bulk, err := b.client.BulkCreateMemories(as("admin-a"), &memoryv1.BulkCreateMemoriesRequest{Memories: items})
	require.NoError(t, err)
	idOf := map[string]string{}
	for i, r := range bulk.GetResults() {
		idOf[r.GetMemory().GetId()] = texts[i]
	}
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.memories WHERE tenant_id = $1 AND embedding_status = 2`, b.tenantA).Scan(&n))
		return n == len(texts)
	}, 10*time.Second, 20*time.Millisecond)

	emb := hashing.New(384)
	cosine := func(a, b []float32) float64 {
		var ab, aa, bb float64
		for i := range a {
			ab += float64(a[i]) * float64(b[i])
			aa += float64(a[i]) * float64(a[i])
			bb += float64(b[i]) * float64(b[i])
		}
		return ab / math.Sqrt(aa*bb)
	}
	query := emb.EmbedOne(texts[4])
	long := make([]float32, len(query))
	for i, x := range query {
		long[i] = 3 * x
	}
	check := func(label string, req *memoryv1.SearchMemoriesRequest) {
		t.Helper()
		req.Vector, req.Limit = long, 5
		resp, err := b.client.SearchMemories(as("admin-a"), req)
		require.NoError(t, err)
		require.Len(t, resp.GetResults(), 5, label)
		require.Equal(t, texts[4], idOf[resp.GetResults()[0].GetMemory().GetId()], label)
		prev := 2.0
		for _, r := range resp.GetResults() {
			want := cosine(query, emb.EmbedOne(idOf[r.GetMemory().GetId()]))
			require.InDelta(t, want, r.GetScore(), 1e-5, "%s: the score is the cosine similarity", label)
			require.LessOrEqual(t, r.GetScore(), prev, label)
			prev = r.GetScore()
		}
		// The same direction at a threshold of 1 is kept.
		one := 1.0
		req.SimilarityThreshold = &one
		resp, err = b.client.SearchMemories(as("admin-a"), req)
		require.NoError(t, err)
		require.Len(t, resp.GetResults(), 1, "%s: threshold 1 keeps the same direction", label)
	}
	check("identity scope, exact", &memoryv1.SearchMemoriesRequest{IdentityId: b.user1.String()})
	check("tenant-wide, fresh", &memoryv1.SearchMemoriesRequest{})
	require.NoError(t, b.mod.svc.indexFresh(ctx))
	check("tenant-wide, graph", &memoryv1.SearchMemoriesRequest{})
	require.True(t, b.mod.svc.large.known(b.tenantA), "tenant-wide searches went through the graph")
}
