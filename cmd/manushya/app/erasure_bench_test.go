package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// BenchmarkEraseIdentity measures the erasure of an identity holding 100,000
// memories (each with a 384-dimension vector and one version, under the HNSW,
// full-text and metadata indexes), from the REST request to the receipt in state
// COMPLETED: the identity service's transaction and key destruction, the bus, the
// memory service's batched deletes, the usage service's part, and the reports
// back. The memories are seeded with bulk SQL, outside the timing.
//
//	go test ./cmd/manushya/app -run '^$' -bench EraseIdentity -benchtime 1x -timeout 30m
//
// MANUSHYA_BENCH_ERASE_MEMORIES sets another number of memories.
func BenchmarkEraseIdentity(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("MANUSHYA_BENCH_ERASE_MEMORIES")); err == nil && v > 0 {
		n = v
	}
	s := newStack(b)
	a := s.start(b, "all", "MANUSHYA_RATELIMIT_SHADOW=true")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "bench-erase", "Bench erase")
	require.NoError(b, err)
	tgt := target(b, a.GRPCAddr(), a.HTTPAddr())
	db := adminConn(b, s)
	ids := identityv1.NewIdentityServiceClient(tgt.GRPC)
	authed := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)

	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		created, err := ids.CreateIdentity(authed, &identityv1.CreateIdentityRequest{ExternalId: fmt.Sprintf("bench-erase-%d", i)})
		require.NoError(b, err)
		id := created.GetIdentity().GetId()
		// Seeding under the HNSW index would insert into the graph row by row:
		// the index is dropped, the rows written in one statement, and the index
		// built again, as a deployment's would be.
		for _, q := range []string{
			`DROP INDEX memory.memories_embedding_hnsw`,
			`INSERT INTO memory.memories (id, tenant_id, identity_id, text, type, metadata, embedding, embedding_model, embedding_status)
			 SELECT gen_random_uuid(), $1, $2, 'benchmark memory ' || g || ' about topic ' || (g % 97), 'general',
			        jsonb_build_object('topic', g % 97),
			        array(SELECT random() FROM generate_series(1, 384) WHERE g > 0)::vector(384), 'bench', 2
			 FROM generate_series(1, $3) g`,
			`INSERT INTO memory.memory_versions (memory_id, version, tenant_id, text, type, metadata)
			 SELECT id, 1, tenant_id, text, type, metadata FROM memory.memories WHERE identity_id = $2 AND $1::uuid IS NOT NULL`,
			`SET maintenance_work_mem = '512MB'`,
			`CREATE INDEX memories_embedding_hnsw ON memory.memories
			 USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)`,
			`ANALYZE memory.memories`,
		} {
			var args []any
			switch {
			case strings.Contains(q, "$3"):
				args = []any{boot.TenantID, id, n}
			case strings.Contains(q, "$2"):
				args = []any{boot.TenantID, id}
			}
			_, err := db.Exec(ctx, q, args...)
			require.NoError(b, err, q)
		}
		b.StartTimer()

		start := time.Now()
		code, body := rest(b, tgt, http.MethodPost, "/v1/identity/"+id+"/erase", boot.APIKey, `{"reason":"benchmark"}`)
		require.Equal(b, http.StatusOK, code, string(body))
		var started struct {
			Receipt receiptJSON `json:"receipt"`
		}
		require.NoError(b, json.Unmarshal(body, &started))
		rec := awaitReceipt(b, tgt, boot.APIKey, started.Receipt.ID, 20*time.Minute)
		total += time.Since(start)

		b.StopTimer()
		require.EqualValues(b, n, rec.count("memory", "memories"))
		require.Zero(b, countRows(b, db, `SELECT count(*) FROM memory.memories WHERE identity_id = $1`, id))
		b.StartTimer()
	}
	secs := total.Seconds() / float64(b.N)
	b.ReportMetric(secs, "s/erasure")
	b.ReportMetric(float64(n)/secs, "memories/s")
	b.ReportMetric(0, "ns/op")
}
