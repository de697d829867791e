package memory

import (
	"context"
	"testing"
	"time"

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

// TestEmbeddingJobsKeptWhileDefaultModelUnknown: when the embedding service's
// default model cannot be learnt, a job of a memory that already has a vector
// is kept (with backoff), not taken as done: its vector may be a fallback's
// that is owed a re-embedding. Once the model is known the job is done.
func TestEmbeddingJobsKeptWhileDefaultModelUnknown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "a memory with a vector", Wait: true})
	require.Equal(t, memoryv1.EmbeddingStatus_EMBEDDING_STATUS_READY, m.GetEmbeddingStatus())

	b.embedder.listDown.Store(true)
	b.mod.svc.target.forget()
	_, err := b.admin.Exec(ctx, `INSERT INTO memory.embedding_jobs (memory_id, tenant_id, retry_time) VALUES ($1, $2, now())`, m.GetId(), b.tenantA)
	require.NoError(t, err)
	require.NoError(t, b.mod.embedder.sweep(ctx))
	var attempts int
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT attempts FROM memory.embedding_jobs WHERE memory_id = $1", m.GetId()).Scan(&attempts))
	require.Equal(t, 1, attempts, "kept, with backoff")

	b.embedder.listDown.Store(false)
	b.mod.svc.target.forget()
	_, err = b.admin.Exec(ctx, "UPDATE memory.embedding_jobs SET retry_time = now()")
	require.NoError(t, err)
	require.NoError(t, b.mod.embedder.sweep(ctx))
	var n int
	require.NoError(t, b.admin.QueryRow(ctx, "SELECT count(*) FROM memory.embedding_jobs WHERE memory_id = $1", m.GetId()).Scan(&n))
	require.Zero(t, n, "done once the default model is known")
}

// forget drops the learnt model, so the next use asks again.
func (t *targetModel) forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.name, t.asked = "", time.Time{}
}
