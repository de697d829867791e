package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// TestFreshVectorsSearchable: a memory is found by vector search as soon as its
// vector is stored, before the indexer puts it in the HNSW graph; after the
// indexer has run it is found exactly once; thresholds, filters and scopes
// apply to both parts; another tenant's fresh rows never appear.
func TestFreshVectorsSearchable(t *testing.T) {
	t.Parallel()
	// A small exact-scan limit sends tenant-wide and wider filtered searches
	// through the graph plus the fresh scan (annSQL).
	b := setup(t, setupOpts{cfg: Config{ExactScanRows: 5}})
	ctx := context.Background()
	svc := b.mod.svc

	fresh := func(tenant uuid.UUID) int {
		t.Helper()
		var n int
		require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.memories
WHERE tenant_id = $1 AND embedding IS NOT NULL AND NOT embedding_indexed`, tenant).Scan(&n))
		return n
	}
	waitReady := func(tenant uuid.UUID, want int) {
		t.Helper()
		for range 500 {
			var n int
			require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.memories
WHERE tenant_id = $1 AND embedding_status = 2`, tenant).Scan(&n))
			if n >= want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("tenant %s: fewer than %d memories embedded", tenant, want)
	}

	// 20 older memories, half in group g1, embedded and indexed.
	var items []*memoryv1.CreateMemoryRequest
	for i := range 20 {
		items = append(items, &memoryv1.CreateMemoryRequest{
			Text:       fmt.Sprintf("sailing log %d: wind from the north, %d knots", i, i+5),
			IdentityId: b.user1.String(),
			Metadata:   md(t, map[string]any{"group": fmt.Sprintf("g%d", i%2+1)}),
		})
	}
	bulk, err := b.client.BulkCreateMemories(as("admin-a"), &memoryv1.BulkCreateMemoriesRequest{Memories: items})
	require.NoError(t, err)
	require.Len(t, bulk.GetResults(), 20)
	waitReady(b.tenantA, 20)
	require.Equal(t, 20, fresh(b.tenantA), "stored vectors wait for the indexer")
	require.NoError(t, svc.indexFresh(ctx))
	require.Zero(t, fresh(b.tenantA))

	// A new memory, and the same text in tenant B: embedded, not indexed.
	text := "The harbour master keeps a spare key under the blue boat"
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: text, Wait: true, Metadata: md(t, map[string]any{"group": "g1"})})
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, m.GetEmbeddingStatus())
	mB := b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: text, Wait: true})
	require.Equal(t, 1, fresh(b.tenantA))
	require.Equal(t, 1, fresh(b.tenantB))

	search := func(key string, req *memoryv1.SearchMemoriesRequest) []*memoryv1.SearchResult {
		t.Helper()
		if req.GetQuery() == "" {
			req.Query = text
		}
		resp, err := b.client.SearchMemories(as(key), req)
		require.NoError(t, err)
		seen := map[string]bool{}
		for _, r := range resp.GetResults() {
			require.False(t, seen[r.GetMemory().GetId()], "%s returned twice", r.GetMemory().GetId())
			seen[r.GetMemory().GetId()] = true
			if key == "admin-b" {
				require.Equal(t, b.tenantB.String(), r.GetMemory().GetTenantId())
				continue
			}
			require.NotEqual(t, mB.GetId(), r.GetMemory().GetId(), "tenant B's memory in tenant A's results")
			require.Equal(t, b.tenantA.String(), r.GetMemory().GetTenantId())
		}
		return resp.GetResults()
	}
	type view struct {
		tenant, group, thresholdHigh, thresholdLow, otherIdentity []string
		groupLen                                                  int
	}
	look := func() view {
		t.Helper()
		var v view
		v.tenant = ids(search("admin-a", &memoryv1.SearchMemoriesRequest{Limit: 10}))
		g1 := search("admin-a", &memoryv1.SearchMemoriesRequest{Limit: 10, Filter: &memoryv1.Filter{Condition: &memoryv1.FilterCondition{
			Field: "metadata.group", Op: opEQ, Value: md(t, map[string]any{"v": "g1"}).GetFields()["v"],
		}}})
		for _, r := range g1 {
			require.Equal(t, "g1", r.GetMemory().GetMetadata().GetFields()["group"].GetStringValue())
		}
		v.group, v.groupLen = ids(g1), len(g1)
		high := 0.99
		v.thresholdHigh = ids(search("admin-a", &memoryv1.SearchMemoriesRequest{Limit: 10, SimilarityThreshold: &high}))
		low := 0.01
		lowRes := search("admin-a", &memoryv1.SearchMemoriesRequest{Limit: 50, SimilarityThreshold: &low})
		for _, r := range lowRes {
			require.GreaterOrEqual(t, r.GetScore(), low)
		}
		v.thresholdLow = ids(lowRes)
		v.otherIdentity = ids(search("admin-a", &memoryv1.SearchMemoriesRequest{Limit: 10, IdentityId: b.user2.String()}))
		return v
	}

	before := look()
	require.True(t, svc.large.known(b.tenantA), "tenant-wide searches went through the graph and the fresh scan")
	require.NotEmpty(t, before.tenant)
	require.Equal(t, m.GetId(), before.tenant[0], "the fresh memory is the nearest")
	require.Len(t, before.tenant, 10)
	require.Equal(t, m.GetId(), before.group[0])
	require.Equal(t, 10, before.groupLen, "11 rows pass the filter: the limit is filled")
	require.Equal(t, []string{m.GetId()}, before.thresholdHigh)
	require.Contains(t, before.thresholdLow, m.GetId())
	require.Empty(t, before.otherIdentity)

	// Tenant B sees its own fresh memory, and only it.
	require.Equal(t, []string{mB.GetId()}, ids(search("admin-b", &memoryv1.SearchMemoriesRequest{})))

	// The indexer moves both tenants' rows into the graph; the answers stay.
	require.NoError(t, svc.indexFresh(ctx))
	require.Zero(t, fresh(b.tenantA))
	require.Zero(t, fresh(b.tenantB))
	var queued int
	require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.fresh_tenants`).Scan(&queued))
	require.Zero(t, queued)
	after := look()
	require.Equal(t, before, after)
	require.Equal(t, []string{mB.GetId()}, ids(search("admin-b", &memoryv1.SearchMemoriesRequest{})))
}

// TestFreshQueueFollowsWrites: storing vectors queues the tenant for the
// indexer, and a re-embedded (or edited) memory is fresh again.
func TestFreshQueueFollowsWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "Lives in Lisbon", Wait: true})
	var queued []uuid.UUID
	rows, err := b.admin.Query(ctx, `SELECT tenant_id FROM memory.fresh_tenants`)
	require.NoError(t, err)
	for rows.Next() {
		var id uuid.UUID
		require.NoError(t, rows.Scan(&id))
		queued = append(queued, id)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []uuid.UUID{b.tenantA}, queued)

	require.NoError(t, b.mod.svc.indexFresh(ctx))
	indexed := func() bool {
		var v bool
		require.NoError(t, b.admin.QueryRow(ctx, `SELECT embedding_indexed FROM memory.memories WHERE id = $1`, m.GetId()).Scan(&v))
		return v
	}
	require.True(t, indexed())

	// An edit of the text re-embeds: the new vector is fresh, and searchable.
	_, err = b.client.UpdateMemory(as("user1"), &memoryv1.UpdateMemoryRequest{
		Memory: &memoryv1.Memory{Id: m.GetId(), Text: "Moved to Porto"}, ExpectedVersion: 1, Wait: true,
	})
	require.NoError(t, err)
	require.False(t, indexed())
	resp, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "Moved to Porto"})
	require.NoError(t, err)
	require.Equal(t, []string{m.GetId()}, ids(resp.GetResults()))
	require.NoError(t, b.mod.svc.indexFresh(ctx))
	require.True(t, indexed())
}
