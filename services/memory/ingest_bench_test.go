package memory

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// BenchmarkIngest measures the write path with the embedder consumer running:
// bulk ingest (batches of 1000, 4 concurrent clients) until every memory is
// searchable by vector; single creates acknowledged; and created-to-searchable
// latency of creates with wait=true; then how long until the indexer has put
// every vector into the HNSW graph. MEMORY_BENCH_INGEST_N sets the bulk size
// (default 10000). Run once:
//
//	go test ./services/memory -run '^$' -bench BenchmarkIngest -benchtime 1x
func BenchmarkIngest(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("MEMORY_BENCH_INGEST_N")); err == nil && v > 0 {
		n = v
	}
	// The indexer runs as in production, competing with the ingest for the
	// cores while it puts the fresh vectors into the HNSW graph.
	cfg := Config{EmbedBatchSize: 256, IndexInterval: time.Second}
	// MEMORY_BENCH_INDEX_INTERVAL overrides IndexInterval (1h: the indexer
	// stays idle during the bulk, to see the store path alone).
	if v, err := time.ParseDuration(os.Getenv("MEMORY_BENCH_INDEX_INTERVAL")); err == nil && v > 0 {
		cfg.IndexInterval = v
	}
	// MEMORY_BENCH_EMBED_CONCURRENCY overrides EmbedConcurrency.
	if v, err := strconv.Atoi(os.Getenv("MEMORY_BENCH_EMBED_CONCURRENCY")); err == nil && v > 0 {
		cfg.EmbedConcurrency = v
	}
	tb := setup(b, setupOpts{cfg: cfg})
	ctx := context.Background()
	gen := newTextGen(7)
	batches := make([][]*memoryv1.CreateMemoryRequest, 0, n/1000+1)
	for start := 0; start < n; start += 1000 {
		var items []*memoryv1.CreateMemoryRequest
		for range min(1000, n-start) {
			items = append(items, &memoryv1.CreateMemoryRequest{Text: gen.sentence(), IdentityId: tb.user1.String()})
		}
		batches = append(batches, items)
	}

	start := time.Now()
	measure(len(batches), 4, func(i int) {
		resp, err := tb.client.BulkCreateMemories(as("admin-a"), &memoryv1.BulkCreateMemoriesRequest{Memories: batches[i]})
		if err != nil {
			b.Error(err)
			return
		}
		for _, r := range resp.GetResults() {
			if r.GetStatus().GetCode() != 0 {
				b.Error(r.GetStatus().GetMessage())
				return
			}
		}
	})
	acked := time.Since(start)
	for {
		var ready int
		require.NoError(b, tb.admin.QueryRow(ctx, "SELECT count(*) FROM memory.memories WHERE embedding_status = 2").Scan(&ready))
		if ready >= n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("only %d of %d memories ready after 10 minutes", ready, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	searchable := time.Since(start)
	rate := float64(n) / searchable.Seconds()
	b.Logf("bulk: %d memories acknowledged in %s, all searchable after %s: %.0f memories/s", n, acked.Round(time.Millisecond), searchable.Round(time.Millisecond), rate)
	b.ReportMetric(rate, "bulk-searchable-memories/s")

	const singles = 200
	single := measure(singles, 1, func(int) {
		if _, err := tb.client.CreateMemory(as("user1"), &memoryv1.CreateMemoryRequest{Text: gen.sentence()}); err != nil {
			b.Error(err)
		}
	})
	waited := measure(singles/2, 1, func(int) {
		resp, err := tb.client.CreateMemory(as("user1"), &memoryv1.CreateMemoryRequest{Text: gen.sentence(), Wait: true})
		if err != nil {
			b.Error(err)
			return
		}
		if resp.GetMemory().GetEmbeddingStatus() != memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY {
			b.Errorf("create with wait returned %s", resp.GetMemory().GetEmbeddingStatus())
		}
	})
	b.Logf("single create: p50 %.2fms p95 %.2fms | created-to-searchable (wait=true): p50 %.2fms p95 %.2fms",
		ms(pct(single, 50)), ms(pct(single, 95)), ms(pct(waited, 50)), ms(pct(waited, 95)))
	b.ReportMetric(ms(pct(single, 95)), "create-p95-ms")
	b.ReportMetric(ms(pct(waited, 95)), "searchable-p95-ms")

	// How long the graph trails: every vector stored is in the HNSW index.
	for cfg.IndexInterval < time.Minute {
		var fresh int
		require.NoError(b, tb.admin.QueryRow(ctx, "SELECT count(*) FROM memory.memories WHERE embedding IS NOT NULL AND NOT embedding_indexed").Scan(&fresh))
		if fresh == 0 {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("%d vectors still not indexed after 10 minutes", fresh)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cfg.IndexInterval < time.Minute {
		b.Logf("all vectors in the HNSW graph %s after the bulk began", time.Since(start).Round(time.Millisecond))
	}
}
