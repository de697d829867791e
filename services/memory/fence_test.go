package memory

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/memory/store"
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

// TestFencedIndexMigrationUpgradesData runs migration 00006 on a database that
// already holds embedded memories (a deployment upgrading): the index is
// rebuilt over the existing rows and serves the new query shape.
func TestFencedIndexMigrationUpgradesData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The migration set as a binary before 00006 embedded it.
	set := Migrations()
	older := fstest.MapFS{}
	entries, err := fs.ReadDir(set.FS, ".")
	require.NoError(t, err)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") && e.Name() < "00006" {
			body, err := fs.ReadFile(set.FS, e.Name())
			require.NoError(t, err)
			older[e.Name()] = &fstest.MapFile{Data: body}
		}
	}
	db := pgtest.New(t, postgres.Migrations{Schema: set.Schema, FS: older})
	admin, err := pgxpool.New(ctx, db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(admin.Close)

	emb := hashing.New(384)
	gen := newTextGen(5)
	tenantA, tenantB := uuid.New(), uuid.New()
	var vecsA []float32
	var idsA []uuid.UUID
	for i := range 60 {
		tenant := tenantA
		if i%4 == 3 {
			tenant = tenantB
		}
		v := emb.EmbedOne(gen.sentence())
		id := uuid.New()
		_, err := admin.Exec(ctx, `INSERT INTO memory.memories (id, tenant_id, identity_id, text, embedding, embedding_model, embedding_status)
VALUES ($1, $2, $3, 'seeded', $4::vector, $5, 2)`, id, tenant, uuid.New(), vecString(v), emb.Model())
		require.NoError(t, err)
		if tenant == tenantA {
			vecsA = append(vecsA, v...)
			idsA = append(idsA, id)
		}
	}

	require.NoError(t, postgres.Migrate(ctx, db.OwnerURL, pgtest.AppRole, set))
	var def string
	require.NoError(t, admin.QueryRow(ctx, `SELECT pg_get_indexdef('memory.memories_embedding_hnsw'::regclass)`).Scan(&def))
	require.Contains(t, def, "fenced_embedding")
	// 00012: the graph is partial, and the rows that had vectors are in it.
	require.Contains(t, def, "WHERE embedding_indexed")
	var fresh int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM memory.memories WHERE embedding IS NOT NULL AND NOT embedding_indexed`).Scan(&fresh))
	require.Zero(t, fresh)

	q := emb.EmbedOne(gen.sentence())
	type row struct {
		id  uuid.UUID
		vec []float32
	}
	var rows []row
	for i, id := range idsA {
		rows = append(rows, row{id: id, vec: vecsA[i*384 : (i+1)*384]})
	}
	truth := exactKNN(rows, func(row) bool { return true }, func(r row) []float32 { return r.vec },
		func(r row) string { return r.id.String() }, q, 10)
	var got []string
	err = store.New(db.Pool).InSearch(ctx, tenantA, 100, func(tx *store.Tx) error {
		sql := annSQL("m.tenant_id = $1 AND "+store.Live+" AND m.embedding IS NOT NULL", "$2", "$1", "$3", "$4")
		return tx.Query(ctx, "/* upgraded */ "+sql, []any{tenantA, vecString(q), 2.0, 10}, func() []any { return []any{new(float64)} },
			func(m store.Memory) {
				require.Equal(t, tenantA, m.TenantID)
				got = append(got, m.ID.String())
			})
	})
	require.NoError(t, err)
	require.Equal(t, truth, got)
}
