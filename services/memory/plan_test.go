package memory

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
)

// TestSearchPlans EXPLAINs every query shape of search and list, built by the
// same code as the service, and asserts the index each is meant to use.
func TestSearchPlans(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	// The index is built once after loading, as a bulk load would; building it
	// row by row is what makes this test slow otherwise.
	_, err := b.admin.Exec(ctx, "DROP INDEX memory.memories_embedding_hnsw")
	require.NoError(t, err)
	// 6000 rows over two tenants and 60 identities, random unit-ish vectors, one
	// in 500 tagged with a rare client id, one in 100 fresh (not yet indexed).
	_, err = b.admin.Exec(ctx, `
INSERT INTO memory.memories (id, tenant_id, identity_id, text, metadata, embedding, embedding_status, embedding_indexed)
SELECT gen_random_uuid(),
       CASE WHEN g % 2 = 0 THEN $1::uuid ELSE $2::uuid END,
       ('00000000-0000-0000-0000-0000000000' || lpad((g % 60)::text, 2, '0'))::uuid,
       'memory number ' || g || ' about topic ' || (g % 97),
       CASE WHEN g % 500 = 0 THEN '{"client_id": "rare"}'::jsonb ELSE jsonb_build_object('client_id', 'c' || (g % 7)) END,
       (SELECT array_agg(random() - 0.5)::vector(384) FROM generate_series(1, 384) WHERE g > 0),
       2, g % 100 <> 0
FROM generate_series(1, 6000) g`, b.tenantA, b.tenantB)
	require.NoError(t, err)
	_, err = b.admin.Exec(ctx, hnswIndexSQL)
	require.NoError(t, err)
	_, err = b.admin.Exec(ctx, "VACUUM ANALYZE memory.memories")
	require.NoError(t, err)
	// Under row-level security PostgreSQL uses an index for a condition only if
	// its operator is leakproof (or it is the policy's own). jsonb @> and
	// tsvector @@ are not by default, so the GIN indexes would go unused and
	// every keyword or metadata search would read the tenant's whole scope.
	// Provisioning marks them leakproof (a superuser step, per database):
	require.NoError(t, MarkLeakproof(ctx, b.admin))

	svc := b.mod.svc
	c := &caller{p: &auth.Principal{Roles: []string{auth.RoleAdmin}}, tenant: b.tenantA}
	vec := hashing.New(384).EmbedOne("topic 42")
	explain := func(sel selection, build func(where string, args *sqlArgs) string) string {
		args := &sqlArgs{}
		conds, err := svc.where(c, sel, false, args)
		require.NoError(t, err)
		sql := build(strings.Join(conds, " AND "), args)
		var plan []string
		err = svc.store.InSearch(ctx, b.tenantA, 100, func(tx *store.Tx) error {
			rows, err := tx.Rows(ctx, "EXPLAIN "+sql, args.vals...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					return err
				}
				plan = append(plan, line)
			}
			return rows.Err()
		})
		require.NoError(t, err, sql)
		return vectorLiteral.ReplaceAllString(strings.Join(plan, "\n"), "'[…]'")
	}
	ann := func(where string, args *sqlArgs) string {
		return annSQL(where+" AND m.embedding IS NOT NULL", args.add(vecString(vec)), args.add(b.tenantA), args.add(2.0), args.add(10))
	}
	exact := func(where string, args *sqlArgs) string {
		return exactSQL(where+" AND m.embedding IS NOT NULL", args.add(vecString(vec)), args.add(10001), args.add(10))
	}
	keyword := func(where string, args *sqlArgs) string {
		return keywordSQL(where, args.add(keywordQuery("42")), args.add(10))
	}
	list := func(where string, args *sqlArgs) string {
		return "SELECT " + store.Columns + " FROM memory.memories m WHERE " + where + " ORDER BY m.create_time DESC, m.id DESC LIMIT 51"
	}
	ident := uuid.MustParse("00000000-0000-0000-0000-000000000007").String()
	rare := &memoryv1.Filter{Condition: &memoryv1.FilterCondition{Field: "metadata.client_id", Op: opEQ, Value: structpb.NewStringValue("rare")}}

	p := explain(selection{}, ann)
	require.Contains(t, p, "memories_embedding_hnsw", "tenant-wide vector search:\n%s", p)
	require.Contains(t, p, "memories_fresh", "tenant-wide vector search, fresh rows:\n%s", p)
	p = explain(selection{identityID: ident}, exact)
	require.Contains(t, p, "Index Only Scan using memories_identity_vectors", "identity-scoped exact search:\n%s", p)
	require.NotContains(t, p, "hnsw", p)
	p = explain(selection{filter: rare}, exact)
	require.Contains(t, p, "memories_metadata", "metadata-filtered exact search:\n%s", p)
	p = explain(selection{}, keyword)
	require.Contains(t, p, "memories_tsv", "keyword search:\n%s", p)
	p = explain(selection{identityID: ident}, list)
	require.Contains(t, p, "memories_identity_time", "identity list:\n%s", p)
	p = explain(selection{}, list)
	require.Contains(t, p, "memories_tenant_time", "tenant list:\n%s", p)
}

// hnswIndexSQL is the HNSW index of migration 00012 (partial on
// embedding_indexed), for tests that drop it to load rows in bulk and build it
// afterwards.
const hnswIndexSQL = `CREATE INDEX memories_embedding_hnsw ON memory.memories
  USING hnsw ((memory.fenced_embedding(embedding, tenant_id)::halfvec(416)) halfvec_cosine_ops)
  WITH (m = 16, ef_construction = 64) WHERE embedding_indexed`

var vectorLiteral = regexp.MustCompile(`'\[[^\]]*\]'`)
