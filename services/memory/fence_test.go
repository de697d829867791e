package memory

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// TestFencedEmbedding checks the geometry the HNSW index relies on (migration
// 00006): within a tenant the fenced distance is the cosine distance divided
// by 10 (same order, exact thresholds recomputed from the stored vector), and
// another tenant's rows are farther than any of one's own.
func TestFencedEmbedding(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	emb := hashing.New(384)
	a := vecString(emb.EmbedOne("walks the dog every morning"))
	c := vecString(emb.EmbedOne("walks the cat in the evening"))
	tenants := []string{"11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222", "33333333-3333-3333-3333-333333333333"}
	for _, t1 := range tenants {
		var fenced, plain float64
		require.NoError(t, b.admin.QueryRow(ctx, `SELECT memory.fenced_embedding($1::vector, $3) <=> memory.fenced_embedding($2::vector, $3),
$1::vector <=> $2::vector`, a, c, t1).Scan(&fenced, &plain))
		require.InDelta(t, plain/10, fenced, 1e-6, "tenant %s", t1)
		var dims int
		require.NoError(t, b.admin.QueryRow(ctx, `SELECT vector_dims(memory.fenced_embedding($1::vector, $2))`, a, t1).Scan(&dims))
		require.Equal(t, 416, dims)
		for _, t2 := range tenants {
			if t1 == t2 {
				continue
			}
			var across float64
			require.NoError(t, b.admin.QueryRow(ctx, `SELECT memory.fenced_embedding($1::vector, $2) <=> memory.fenced_embedding($1::vector, $3)`,
				a, t1, t2).Scan(&across))
			require.Greater(t, across, 0.2, "the same vector in tenants %s and %s", t1, t2)
		}
	}
}

// TestTenantWideSearchPaths: a tenant small enough is ranked exactly; a larger
// one goes through the HNSW index and is remembered as large. Both return the
// exact nearest memories of their own tenant only, with the threshold honoured,
// while another tenant holds copies of the same texts.
func TestTenantWideSearchPaths(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true, cfg: Config{ExactScanRows: 20}})
	ctx := context.Background()
	emb := hashing.New(384)
	gen := newTextGen(3)
	type row struct {
		id  uuid.UUID
		vec []float32
	}
	seed := func(tenant uuid.UUID, texts []string) []row {
		var out []row
		for _, text := range texts {
			r := row{id: uuid.New(), vec: emb.EmbedOne(text)}
			_, err := b.admin.Exec(ctx, `INSERT INTO memory.memories (id, tenant_id, identity_id, text, embedding, embedding_model, embedding_status)
VALUES ($1, $2, $3, $4, $5::vector, $6, 2)`, r.id, tenant, b.user1, text, vecString(r.vec), emb.Model())
			require.NoError(t, err)
			out = append(out, r)
		}
		return out
	}
	var texts []string
	for range 60 {
		texts = append(texts, gen.sentence())
	}
	rowsA := seed(b.tenantA, texts)     // larger than ExactScanRows: the index
	rowsB := seed(b.tenantB, texts[:5]) // small: exact
	query := gen.sentence()
	qv := emb.EmbedOne(query)

	check := func(key string, tenant uuid.UUID, rows []row, thr *float64) {
		t.Helper()
		resp, err := b.client.SearchMemories(as(key), &memoryv1.SearchMemoriesRequest{Query: query, Limit: 10, SimilarityThreshold: thr})
		require.NoError(t, err)
		truth := exactKNN(rows, func(r row) bool {
			if thr == nil {
				return true
			}
			var dot float64
			for i := range qv {
				dot += float64(qv[i]) * float64(r.vec[i])
			}
			return dot >= *thr
		}, func(r row) []float32 { return r.vec }, func(r row) string { return r.id.String() }, qv, 10)
		require.Equal(t, truth, ids(resp.GetResults()), "tenant %s, threshold %v", tenant, thr)
		for _, r := range resp.GetResults() {
			require.Equal(t, tenant.String(), r.GetMemory().GetTenantId())
			if thr != nil {
				require.GreaterOrEqual(t, r.GetScore(), *thr)
			}
		}
	}
	check("admin-a", b.tenantA, rowsA, nil)
	require.True(t, b.mod.svc.large.known(b.tenantA), "tenant A holds more than ExactScanRows rows")
	check("admin-b", b.tenantB, rowsB, nil)
	require.False(t, b.mod.svc.large.known(b.tenantB), "tenant B is small")
	// Thresholds: the same on both paths. 0.3 keeps some rows and not others.
	thr := 0.3
	check("admin-a", b.tenantA, rowsA, &thr)
	check("admin-b", b.tenantB, rowsB, &thr)
	require.Greater(t, len(rowsA), 20, fmt.Sprint("seeded ", len(rowsA)))
}
