package memory

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

func md(t testing.TB, m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

func ids(rs []*memoryv1.SearchResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.GetMemory().GetId()
	}
	return out
}

func TestCreateEmbedSearch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Returns at once, pending; the embedder makes it ready.
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{
		Text: "Client meeting notes: discussed retirement planning and index funds", Type: "meeting_note",
		Metadata: md(t, map[string]any{"client_id": "CS001"}),
	})
	require.Equal(t, b.user1.String(), m.GetIdentityId())
	require.Equal(t, b.tenantA.String(), m.GetTenantId())
	require.Equal(t, int32(1), m.GetVersion())

	// Keyword search finds it whatever its embedding status.
	kw, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "retirement", Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD})
	require.NoError(t, err)
	require.Equal(t, []string{m.GetId()}, ids(kw.GetResults()))
	require.NotNil(t, kw.GetResults()[0].KeywordScore)

	w := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "Prefers tea over coffee in the morning", Wait: true})
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, w.GetEmbeddingStatus())
	require.Equal(t, "hashing-v1-384", w.GetEmbeddingModel())
	require.Equal(t, "general", w.GetType())

	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m.GetId()})
	require.NoError(t, err)
	require.Equal(t, "CS001", got.GetMemory().GetMetadata().GetFields()["client_id"].GetStringValue())
	b.waitStatus(t, m.GetId(), memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY)

	thr := 0.3
	vs, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "retirement planning", SimilarityThreshold: &thr, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, memoryv1.SearchMode_SEARCH_MODE_VECTOR, vs.GetMode())
	require.Equal(t, "hashing-v1-384", vs.GetEmbeddingModel())
	require.Equal(t, []string{m.GetId()}, ids(vs.GetResults()), "the tea memory is below the threshold")
	require.GreaterOrEqual(t, vs.GetResults()[0].GetScore(), thr)

	hy, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "coffee", Mode: memoryv1.SearchMode_SEARCH_MODE_HYBRID})
	require.NoError(t, err)
	require.Equal(t, w.GetId(), hy.GetResults()[0].GetMemory().GetId())
	require.NotNil(t, hy.GetResults()[0].KeywordScore)
	require.NotNil(t, hy.GetResults()[0].VectorScore)

	// A threshold of 1 keeps only identical directions.
	one := 1.0
	exact, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "Prefers tea over coffee in the morning", SimilarityThreshold: &one})
	require.NoError(t, err)
	for _, r := range exact.GetResults() {
		require.GreaterOrEqual(t, r.GetScore(), 1.0-1e-6)
	}
}

func (b *testBundle) waitStatus(t testing.TB, id string, want memoryv1.EmbeddingStatus) {
	t.Helper()
	// Update with wait=true and an empty change is not a wait; poll via the store
	// through the service's own bounded wait instead.
	m, err := b.client.GetMemory(as("admin-a"), &memoryv1.GetMemoryRequest{Id: id, IncludeDeleted: true})
	require.NoError(t, err)
	for range 200 {
		if m.GetMemory().GetEmbeddingStatus() == want {
			return
		}
		sm, _ := b.mod.svc.store.Pool().Exec(context.Background(), "SELECT pg_sleep(0.02)")
		_ = sm
		m, err = b.client.GetMemory(as("admin-a"), &memoryv1.GetMemoryRequest{Id: id, IncludeDeleted: true})
		require.NoError(t, err)
	}
	require.Equal(t, want, m.GetMemory().GetEmbeddingStatus())
}

func TestScopingAndTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	m1 := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "user one likes sailing"})
	m2 := b.create(t, "user2", &memoryv1.CreateMemoryRequest{Text: "user two likes sailing"})
	mB := b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: "tenant b likes sailing"})
	// An admin creates for another identity; a user may not.
	forU2 := b.create(t, "admin-a", &memoryv1.CreateMemoryRequest{Text: "admin wrote sailing for user two", IdentityId: b.user2.String()})
	require.Equal(t, b.user2.String(), forU2.GetIdentityId())
	_, err := b.client.CreateMemory(as("user1"), &memoryv1.CreateMemoryRequest{Text: "x", IdentityId: b.user2.String()})
	requireCode(t, err, codes.PermissionDenied)
	// An agent's memories carry its id as agent.
	ag := b.create(t, "agent1", &memoryv1.CreateMemoryRequest{Text: "agent note about sailing"})
	require.Equal(t, b.agent1.String(), ag.GetAgentId())

	_, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m2.GetId()})
	requireCode(t, err, codes.NotFound)
	_, err = b.client.GetMemory(as("admin-a"), &memoryv1.GetMemoryRequest{Id: mB.GetId()})
	requireCode(t, err, codes.NotFound)
	_, err = b.client.DeleteMemory(as("user1"), &memoryv1.DeleteMemoryRequest{Id: m2.GetId()})
	requireCode(t, err, codes.NotFound)

	search := func(key string, req *memoryv1.SearchMemoriesRequest) []string {
		req.Query, req.Mode = "sailing", memoryv1.SearchMode_SEARCH_MODE_KEYWORD
		resp, err := b.client.SearchMemories(as(key), req)
		require.NoError(t, err)
		return ids(resp.GetResults())
	}
	require.ElementsMatch(t, []string{m1.GetId()}, search("user1", &memoryv1.SearchMemoriesRequest{}))
	require.ElementsMatch(t, []string{m2.GetId(), forU2.GetId()}, search("user2", &memoryv1.SearchMemoriesRequest{}))
	require.ElementsMatch(t, []string{m1.GetId(), m2.GetId(), forU2.GetId(), ag.GetId()}, search("admin-a", &memoryv1.SearchMemoriesRequest{}))
	require.ElementsMatch(t, []string{m2.GetId(), forU2.GetId()}, search("admin-a", &memoryv1.SearchMemoriesRequest{IdentityId: b.user2.String()}))
	require.ElementsMatch(t, []string{mB.GetId()}, search("admin-b", &memoryv1.SearchMemoriesRequest{}))
	_, err = b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "x", IdentityId: b.user2.String(), Mode: memoryv1.SearchMode_SEARCH_MODE_KEYWORD})
	requireCode(t, err, codes.PermissionDenied)

	list, err := b.client.ListMemories(as("user1"), &memoryv1.ListMemoriesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetMemories(), 1)

	// RLS: even a raw query of the app role without a tenant sees nothing.
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM memory.memories").Scan(&n))
	require.Zero(t, n)
}

func TestUpdateHistoryDeleteRestore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := as("user1")
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "Lives in Lisbon", Metadata: md(t, map[string]any{"a": 1.0}), Wait: true})
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, m.GetEmbeddingStatus())

	// Metadata only: merged, new version, embedding kept.
	up, err := b.client.UpdateMemory(ctx, &memoryv1.UpdateMemoryRequest{
		Memory:     &memoryv1.Memory{Id: m.GetId(), Metadata: md(t, map[string]any{"b": "x"})},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"metadata"}},
	})
	require.NoError(t, err)
	require.Equal(t, int32(2), up.GetMemory().GetVersion())
	require.Len(t, up.GetMemory().GetMetadata().GetFields(), 2)
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, up.GetMemory().GetEmbeddingStatus())

	// Stale expected_version is refused.
	_, err = b.client.UpdateMemory(ctx, &memoryv1.UpdateMemoryRequest{Memory: &memoryv1.Memory{Id: m.GetId(), Text: "x"}, ExpectedVersion: 1})
	requireCode(t, err, codes.Aborted)
	_, err = b.client.UpdateMemory(ctx, &memoryv1.UpdateMemoryRequest{
		Memory: &memoryv1.Memory{Id: m.GetId()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"identity_id"}}})
	requireField(t, err, "update_mask.paths[0]")

	// Text: re-embedded.
	up, err = b.client.UpdateMemory(ctx, &memoryv1.UpdateMemoryRequest{
		Memory: &memoryv1.Memory{Id: m.GetId(), Text: "Moved to Porto"}, ExpectedVersion: 2, Wait: true,
	})
	require.NoError(t, err)
	require.Equal(t, int32(3), up.GetMemory().GetVersion())
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, up.GetMemory().GetEmbeddingStatus())
	vs, err := b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Query: "Porto"})
	require.NoError(t, err)
	require.Equal(t, []string{m.GetId()}, ids(vs.GetResults()))

	hist, err := b.client.ListMemoryVersions(ctx, &memoryv1.ListMemoryVersionsRequest{Id: m.GetId(), PageSize: 2})
	require.NoError(t, err)
	require.Len(t, hist.GetVersions(), 2)
	require.Equal(t, int32(3), hist.GetVersions()[0].GetVersion())
	require.Equal(t, []string{"text"}, hist.GetVersions()[0].GetChangedFields())
	require.Equal(t, b.user1.String(), hist.GetVersions()[0].GetActorId())
	hist, err = b.client.ListMemoryVersions(ctx, &memoryv1.ListMemoryVersionsRequest{Id: m.GetId(), PageToken: hist.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, hist.GetVersions(), 1)
	require.Equal(t, "Lives in Lisbon", hist.GetVersions()[0].GetText())

	// Soft delete hides it everywhere; restore brings it back.
	del, err := b.client.DeleteMemory(ctx, &memoryv1.DeleteMemoryRequest{Id: m.GetId()})
	require.NoError(t, err)
	require.NotNil(t, del.GetMemory().GetDeleteTime())
	_, err = b.client.GetMemory(ctx, &memoryv1.GetMemoryRequest{Id: m.GetId()})
	requireCode(t, err, codes.NotFound)
	_, err = b.client.DeleteMemory(ctx, &memoryv1.DeleteMemoryRequest{Id: m.GetId()})
	requireCode(t, err, codes.NotFound)
	for _, mode := range []memoryv1.SearchMode{memoryv1.SearchMode_SEARCH_MODE_VECTOR, memoryv1.SearchMode_SEARCH_MODE_KEYWORD, memoryv1.SearchMode_SEARCH_MODE_HYBRID} {
		r, err := b.client.SearchMemories(ctx, &memoryv1.SearchMemoriesRequest{Query: "Porto", Mode: mode})
		require.NoError(t, err)
		require.Empty(t, r.GetResults(), mode.String())
	}
	l, err := b.client.ListMemories(ctx, &memoryv1.ListMemoriesRequest{IncludeDeleted: true})
	require.NoError(t, err)
	require.Len(t, l.GetMemories(), 1)
	_, err = b.client.RestoreMemory(ctx, &memoryv1.RestoreMemoryRequest{Id: m.GetId()})
	require.NoError(t, err)
	_, err = b.client.RestoreMemory(ctx, &memoryv1.RestoreMemoryRequest{Id: m.GetId()})
	requireCode(t, err, codes.FailedPrecondition)

	// Hard delete: row, history and vector gone.
	_, err = b.client.DeleteMemory(ctx, &memoryv1.DeleteMemoryRequest{Id: m.GetId(), Hard: true})
	require.NoError(t, err)
	var rows int
	require.NoError(t, b.admin.QueryRow(context.Background(),
		"SELECT (SELECT count(*) FROM memory.memories) + (SELECT count(*) FROM memory.memory_versions) + (SELECT count(*) FROM memory.embedding_jobs)").Scan(&rows))
	require.Zero(t, rows)
	_, err = b.client.RestoreMemory(ctx, &memoryv1.RestoreMemoryRequest{Id: m.GetId()})
	requireCode(t, err, codes.NotFound)
}

func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	req := &memoryv1.CreateMemoryRequest{Text: "once", IdempotencyKey: "k1"}
	a := b.create(t, "user1", req)
	again := b.create(t, "user1", req)
	require.Equal(t, a.GetId(), again.GetId())
	_, err := b.client.CreateMemory(as("user1"), &memoryv1.CreateMemoryRequest{Text: "different", IdempotencyKey: "k1"})
	requireCode(t, err, codes.Aborted)
	// Keys are per owner.
	other := b.create(t, "user2", req)
	require.NotEqual(t, a.GetId(), other.GetId())
}

func TestListPagingAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	for i := range 7 {
		b.create(t, "user1", &memoryv1.CreateMemoryRequest{
			Text: "note", Type: []string{"a", "b"}[i%2], Metadata: md(t, map[string]any{"n": float64(i)}), SessionId: "s1",
		})
	}
	seen := map[string]bool{}
	req := &memoryv1.ListMemoriesRequest{PageSize: 3, SessionId: "s1"}
	var last string
	for pages := 0; ; pages++ {
		require.Less(t, pages, 4)
		resp, err := b.client.ListMemories(as("user1"), req)
		require.NoError(t, err)
		for _, m := range resp.GetMemories() {
			require.False(t, seen[m.GetId()])
			seen[m.GetId()] = true
			if last != "" {
				require.Less(t, m.GetId(), last, "newest first")
			}
			last = m.GetId()
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Len(t, seen, 7)

	resp, err := b.client.ListMemories(as("user1"), &memoryv1.ListMemoriesRequest{Types: []string{"a"}, Filter: &memoryv1.Filter{
		Condition: &memoryv1.FilterCondition{Field: "metadata.n", Op: memoryv1.FilterCondition_OPERATOR_GTE, Value: structpb.NewNumberValue(3)},
	}})
	require.NoError(t, err)
	require.Len(t, resp.GetMemories(), 2) // n = 4, 6

	_, err = b.client.ListMemories(as("user1"), &memoryv1.ListMemoriesRequest{PageToken: req.GetPageToken(), SessionId: "other"})
	requireField(t, err, "page_token")
}

func TestBulk(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noWorkers: true})
	resp, err := b.client.BulkCreateMemories(as("user1"), &memoryv1.BulkCreateMemoriesRequest{Memories: []*memoryv1.CreateMemoryRequest{
		{Text: "one", Metadata: md(t, map[string]any{"batch": "x"})},
		{Text: "   "},
		{Text: "three", IdentityId: b.user2.String()},
		{Text: "four", Metadata: md(t, map[string]any{"batch": "x"})},
	}})
	require.NoError(t, err)
	require.Len(t, resp.GetResults(), 4)
	require.Equal(t, int32(codes.OK), resp.GetResults()[0].GetStatus().GetCode())
	require.Equal(t, int32(codes.InvalidArgument), resp.GetResults()[1].GetStatus().GetCode())
	require.Contains(t, resp.GetResults()[1].GetStatus().GetMessage(), "memories[1].text")
	require.Equal(t, int32(codes.PermissionDenied), resp.GetResults()[2].GetStatus().GetCode())
	require.Equal(t, int32(codes.OK), resp.GetResults()[3].GetStatus().GetCode())

	del, err := b.client.BulkDeleteMemories(as("user1"), &memoryv1.BulkDeleteMemoriesRequest{
		Ids: []string{resp.GetResults()[0].GetMemory().GetId(), resp.GetResults()[0].GetMemory().GetId()},
	})
	require.NoError(t, err)
	require.Equal(t, int32(1), del.GetDeletedCount())
	require.Equal(t, int32(codes.NotFound), del.GetResults()[1].GetStatus().GetCode())

	filter := &memoryv1.Filter{Condition: &memoryv1.FilterCondition{Field: "metadata.batch", Op: memoryv1.FilterCondition_OPERATOR_EQ, Value: structpb.NewStringValue("x")}}
	dry, err := b.client.BulkDeleteMemories(as("user1"), &memoryv1.BulkDeleteMemoriesRequest{Filter: filter, ValidateOnly: true})
	require.NoError(t, err)
	require.Equal(t, int32(1), dry.GetDeletedCount())
	del, err = b.client.BulkDeleteMemories(as("user1"), &memoryv1.BulkDeleteMemoriesRequest{Filter: filter, Hard: true})
	require.NoError(t, err)
	require.Equal(t, int32(1), del.GetDeletedCount())
	require.False(t, del.GetHasMore())
	l, err := b.client.ListMemories(as("user1"), &memoryv1.ListMemoriesRequest{IncludeDeleted: true})
	require.NoError(t, err)
	require.Len(t, l.GetMemories(), 1) // the soft-deleted "one"
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
