package memory

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// TestBulkCreateStoresTogetherAndIsolatesFailures: a bulk create stores its
// items without idempotency keys together (in a few round trips), with every
// row a single create writes: the memory, its first version, its embedding job,
// its expiry, its memory.created event. When one item fails in the database
// (a trigger of the test refuses one text, standing in for a failure the
// checks do not foresee), that item alone gets the error: the others are
// stored once each, nothing of the failed attempt remains, and an item with an
// idempotency key is stored beside them and replayed on a second call.
func TestBulkCreateStoresTogetherAndIsolatesFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	_, err := b.admin.Exec(ctx, `
CREATE FUNCTION memory.refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.text = 'boom' THEN RAISE EXCEPTION 'refused by the test'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_boom BEFORE INSERT ON memory.memories FOR EACH ROW EXECUTE FUNCTION memory.refuse_boom()`)
	require.NoError(t, err)

	key := "bulk-key-1"
	req := &memoryv1.BulkCreateMemoriesRequest{Memories: []*memoryv1.CreateMemoryRequest{
		{Text: "first", Expiration: &memoryv1.CreateMemoryRequest_TtlSeconds{TtlSeconds: 3600}},
		{Text: "boom"},
		{Text: "keyed", IdempotencyKey: key},
		{Text: "last"},
	}}
	resp, err := b.client.BulkCreateMemories(as("user1"), req)
	require.NoError(t, err)
	codesOf := func(r *memoryv1.BulkCreateMemoriesResponse) []codes.Code {
		var out []codes.Code
		for _, x := range r.GetResults() {
			out = append(out, codes.Code(x.GetStatus().GetCode()))
		}
		return out
	}
	require.Equal(t, []codes.Code{codes.OK, codes.Internal, codes.OK, codes.OK}, codesOf(resp))

	count := func(sql string) int {
		t.Helper()
		var n int
		require.NoError(t, b.admin.QueryRow(ctx, sql, b.tenantA).Scan(&n))
		return n
	}
	require.Equal(t, 3, count(`SELECT count(*) FROM memory.memories WHERE tenant_id = $1`))
	require.Equal(t, 3, count(`SELECT count(*) FROM memory.memory_versions WHERE tenant_id = $1`))
	require.Equal(t, 3, count(`SELECT count(*) FROM memory.embedding_jobs WHERE tenant_id = $1`))
	require.Equal(t, 1, count(`SELECT count(*) FROM memory.expirations WHERE tenant_id = $1`))
	require.Equal(t, 3, count(`SELECT count(*) FROM memory.outbox WHERE subject LIKE '%' || $1::text || '%' AND subject LIKE '%memory.created'`))
	first := resp.GetResults()[0].GetMemory()
	require.Equal(t, "first", first.GetText())
	require.WithinDuration(t, time.Now().Add(time.Hour), first.GetExpireTime().AsTime(), time.Minute)

	// Without the failing item, all go in one batch; the keyed one replays.
	req.Memories = slices.Delete(req.GetMemories(), 1, 2)
	again, err := b.client.BulkCreateMemories(as("user1"), req)
	require.NoError(t, err)
	require.Equal(t, []codes.Code{codes.OK, codes.OK, codes.OK}, codesOf(again))
	require.Equal(t, resp.GetResults()[2].GetMemory().GetId(), again.GetResults()[1].GetMemory().GetId(), "the keyed item replays")
	require.Equal(t, 5, count(`SELECT count(*) FROM memory.memories WHERE tenant_id = $1`))
	require.Equal(t, 5, count(`SELECT count(*) FROM memory.memory_versions WHERE tenant_id = $1`))
}
