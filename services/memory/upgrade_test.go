package memory

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// TestFallbackVectorsReplacedWhenDefaultReturns: while the embedding service's
// default provider is down and a fallback answers, memories are stored with the
// fallback's vectors (searchable by queries the fallback embeds too) and their
// jobs stay queued; a retry the fallback answers again changes nothing; once
// the default answers, the sweeper replaces the fallback's vectors with its
// own. A fallback answer never overwrites a vector of the default model.
func TestFallbackVectorsReplacedWhenDefaultReturns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	primary := b.embedder.e.Model()

	before := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "stored while all was well: sailing on sunday", Wait: true})
	require.Equal(t, primary, before.GetEmbeddingModel())

	b.embedder.fallback.Store(true)
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "stored during the outage: the harbour was closed", Wait: true})
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, m.GetEmbeddingStatus())
	require.Equal(t, testFallbackModel, m.GetEmbeddingModel())
	s, err := b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "harbour closed"})
	require.NoError(t, err)
	require.Equal(t, testFallbackModel, s.GetEmbeddingModel())
	require.Equal(t, []string{m.GetId()}, ids(s.GetResults()), "found by a query the fallback embeds; the default model's vectors are not comparable")

	job := func(id string) (attempts int, lastError string, ok bool) {
		t.Helper()
		err := b.admin.QueryRow(ctx, "SELECT attempts, last_error FROM memory.embedding_jobs WHERE memory_id = $1", id).Scan(&attempts, &lastError)
		return attempts, lastError, err == nil
	}
	attempts, lastError, ok := job(m.GetId())
	require.True(t, ok, "the job waits for the default model")
	require.Equal(t, 1, attempts)
	require.Contains(t, lastError, testFallbackModel)
	_, _, ok = job(before.GetId())
	require.False(t, ok)

	sweepNow := func() {
		t.Helper()
		_, err := b.admin.Exec(ctx, "UPDATE memory.embedding_jobs SET retry_time = now()")
		require.NoError(t, err)
		require.NoError(t, b.mod.embedder.sweep(ctx))
	}
	vector := func(id string) string {
		t.Helper()
		var v, model string
		require.NoError(t, b.admin.QueryRow(ctx, "SELECT embedding::text, embedding_model FROM memory.memories WHERE id = $1", id).Scan(&v, &model))
		return model + v
	}
	// Still down: the retry is answered by the fallback again; nothing changes.
	was := vector(m.GetId())
	sweepNow()
	require.Equal(t, was, vector(m.GetId()))
	attempts, _, ok = job(m.GetId())
	require.True(t, ok)
	require.Equal(t, 2, attempts)
	// A fallback answer does not touch a memory of the default model.
	wasBefore := vector(before.GetId())
	require.NoError(t, b.mod.embedder.embed(ctx, b.tenantA, []uuid.UUID{uuid.MustParse(before.GetId())}))
	require.Equal(t, wasBefore, vector(before.GetId()))

	// The default provider is back: the next retry replaces the vectors.
	b.embedder.fallback.Store(false)
	sweepNow()
	got, err := b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: m.GetId()})
	require.NoError(t, err)
	require.Equal(t, primary, got.GetMemory().GetEmbeddingModel())
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, got.GetMemory().GetEmbeddingStatus())
	_, _, ok = job(m.GetId())
	require.False(t, ok, "the job is done")
	s, err = b.client.SearchMemories(as("user1"), &memoryv1.SearchMemoriesRequest{Query: "harbour closed", Limit: 1})
	require.NoError(t, err)
	require.Equal(t, primary, s.GetEmbeddingModel())
	require.Equal(t, []string{m.GetId()}, ids(s.GetResults()), "found by the default model's query")
}
