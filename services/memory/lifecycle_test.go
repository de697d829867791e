package memory

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

func TestTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := context.Background()
	short := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "temporary parking code 4411", Expiration: &memoryv1.CreateMemoryRequest_TtlSeconds{TtlSeconds: 3600}})
	keep := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "permanent parking spot 12"})
	require.NotNil(t, short.GetExpireTime())
	_, err := b.client.CreateMemory(as("user1"), &memoryv1.CreateMemoryRequest{Text: "x", Expiration: &memoryv1.CreateMemoryRequest_ExpireTime{ExpireTime: timestamppb.New(time.Now().Add(-time.Hour))}})
	requireField(t, err, "expire_time")

	// Move the expiry into the past (as the clock would): every read hides it at once.
	_, err = b.admin.Exec(ctx, "UPDATE memory.memories SET expire_time = now() - interval '1 second' WHERE id = $1", short.GetId())
	require.NoError(t, err)
	_, err = b.admin.Exec(ctx, "UPDATE memory.expirations SET expire_time = now() - interval '1 second' WHERE memory_id = $1", short.GetId())
	require.NoError(t, err)
	_, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: short.GetId(), IncludeDeleted: true})
	requireCode(t, err, codes.NotFound)
	l, err := b.client.ListMemories(as("user1"), &memoryv1.ListMemoriesRequest{IncludeDeleted: true})
	require.NoError(t, err)
	require.Len(t, l.GetMemories(), 1)
	s, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "parking", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD})
	require.NoError(t, err)
	require.Equal(t, []string{keep.GetId()}, ids(s.GetResults()))

	// The sweeper purges it and emits memory.expired.
	require.NoError(t, b.mod.svc.purgeExpired(ctx))
	var n int
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT count(*) FROM memory.memories").Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT count(*) FROM memory.outbox WHERE subject LIKE '%.memory.expired'").Scan(&n))
	require.Equal(t, 1, n)

	// Removing an expiry through update.
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "x", Expiration: &memoryv1.CreateMemoryRequest_TtlSeconds{TtlSeconds: 60}})
	up, err := b.client.UpdateMemory(as("user1"), &memoryv1.UpdateMemoryRequest{Memory: &memoryv1.Memory{Id: m.GetId()}, UpdateMask: mask("expire_time")})
	require.NoError(t, err)
	require.Nil(t, up.GetMemory().GetExpireTime())
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT count(*) FROM memory.expirations").Scan(&n))
	require.Zero(t, n)
}

func TestEmbeddingFailureIsRecordedAndRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.embedder.fail.Store(true)
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "resilient memory about gardening", Wait: true})
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_FAILED, m.GetEmbeddingStatus())
	require.Contains(t, m.GetEmbeddingError(), "provider down")

	// Vector search cannot embed the query: it falls back to keyword.
	s, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "gardening"})
	require.NoError(t, err)
	require.Equal(t, memoryv1.SearchMode_SEARCH_MODE_KEYWORD, s.GetMode())
	require.Equal(t, []string{m.GetId()}, ids(s.GetResults()))

	var attempts int
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT attempts FROM memory.embedding_jobs WHERE memory_id = $1", m.GetId()).Scan(&attempts))
	require.Equal(t, 1, attempts)

	// The provider comes back; once the backoff has passed the sweeper re-embeds.
	b.embedder.fail.Store(false)
	_, err = b.admin.Exec(ctx, "UPDATE memory.embedding_jobs SET retry_time = now()")
	require.NoError(t, err)
	require.NoError(t, b.mod.embedder.sweep(ctx))
	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m.GetId()})
	require.NoError(t, err)
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, got.GetMemory().GetEmbeddingStatus())
	require.Empty(t, got.GetMemory().GetEmbeddingError())
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT count(*) FROM memory.embedding_jobs").Scan(&attempts))
	require.Zero(t, attempts)
}

func TestSweeperEmbedsWithoutBus(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "embedded by the sweeper"})
	require.NoError(t, b.mod.embedder.sweep(context.Background()))
	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m.GetId()})
	require.NoError(t, err)
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, got.GetMemory().GetEmbeddingStatus())
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	ctx := as("user1")
	_, err := b.client.CreateMemory(ctx, &memoryv1.CreateMemoryRequest{Text: ""})
	requireField(t, err, "text")
	_, err = b.client.CreateMemory(ctx, &memoryv1.CreateMemoryRequest{Text: strings.Repeat("x", 100001)})
	requireField(t, err, "text")
	_, err = b.client.CreateMemory(ctx, &memoryv1.CreateMemoryRequest{Text: "x", Type: "bad type!"})
	requireField(t, err, "type")
	big := map[string]any{"k": strings.Repeat("x", 70000)}
	_, err = b.client.CreateMemory(ctx, &memoryv1.CreateMemoryRequest{Text: "x", Metadata: md(t, big)})
	requireField(t, err, "metadata")

	thr := 1.5
	_, err = b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Query: "x", SimilarityThreshold: &thr})
	requireField(t, err, "similarity_threshold")
	_, err = b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Query: "x", Limit: 101})
	requireField(t, err, "limit")
	_, err = b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Vector: []float32{1, 2, 3}})
	requireField(t, err, "vector")
	for _, x := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		vec := make([]float32, 384)
		vec[0], vec[200] = 1, x
		_, err = b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Vector: vec})
		requireField(t, err, "vector")
	}
	_, err = b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{})
	requireCode(t, err, codes.InvalidArgument)
	_, err = b.client.GetMemory(ctx, &memoryv1.GetMemoryRequest{Id: "nope"})
	requireField(t, err, "id")

	cond := func(field string, op memoryv1.FilterCondition_Operator, v *structpb.Value) *memoryv1.Filter {
		return &memoryv1.Filter{Condition: &memoryv1.FilterCondition{Field: field, Op: op, Value: v}}
	}
	bad := []struct {
		f    *memoryv1.Filter
		want string
	}{
		{&memoryv1.Filter{AllOf: []*memoryv1.Filter{cond("type", opEQ, structpb.NewStringValue("a")), cond("version", opGT, structpb.NewStringValue("x"))}}, "filter.all_of[1].condition.value"},
		{&memoryv1.Filter{AnyOf: []*memoryv1.Filter{cond("text", opEQ, structpb.NewStringValue("a"))}}, "filter.any_of[0].condition.op"},
		{cond("metadata.a", opIN, structpb.NewStringValue("a")), "filter.condition.value"},
		{cond("identity_id", opEQ, structpb.NewStringValue("not-a-uuid")), "filter.condition.value"},
		{cond("create_time", opGT, structpb.NewStringValue("yesterday")), "filter.condition.value"},
		{cond("embedding_status", opEQ, structpb.NewStringValue("DONE")), "filter.condition.value"},
		{cond("metadata.a", opGT, structpb.NewBoolValue(true)), "filter.condition.value"},
	}
	for _, c := range bad {
		_, err := b.client.ListMemories(ctx, &memoryv1.ListMemoriesRequest{Filter: c.f})
		requireField(t, err, c.want)
		_, err = b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Query: "x", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD, Filter: c.f})
		requireField(t, err, c.want)
	}
	deep := cond("type", opEQ, structpb.NewStringValue("a"))
	for range 9 {
		deep = &memoryv1.Filter{AllOf: []*memoryv1.Filter{deep}}
	}
	_, err = b.client.ListMemories(ctx, &memoryv1.ListMemoriesRequest{Filter: deep})
	requireCode(t, err, codes.InvalidArgument)
}
