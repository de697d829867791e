package embedder_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/embedder/embeddertest"
	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	"github.com/manushya-ai/manushya/pkg/embedder/openai"
	"github.com/manushya-ai/manushya/pkg/kv"
)

type bundle struct {
	api    *embeddertest.Server
	router *embedder.Router
	reg    *prometheus.Registry
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// setup builds a router over an OpenAI-compatible API (the default, cached,
// no retries) with the hashing embedder as fallback.
func setup(t *testing.T, cache *embedder.Cache) *bundle {
	t.Helper()
	api := embeddertest.NewAPI(t, "sk-router-test", randomName("api-model"), 384)
	client, err := openai.New(openai.Config{BaseURL: api.URL + "/v1", APIKey: api.Key, Model: api.Model, Dimensions: 384, MaxRetries: -1})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	r, err := embedder.NewRouter(embedder.Options{
		Providers: []embedder.ProviderSpec{
			{Name: "api", Kind: embedder.KindOpenAI, Provider: client, Cache: true,
				Breaker: embedder.Breaker{Failures: 2, CoolDown: 20 * time.Millisecond}},
			{Name: "hashing", Kind: embedder.KindHashing, Provider: embedder.Hashing(384)},
		},
		Cache:      cache,
		Registerer: reg,
	})
	require.NoError(t, err)
	return &bundle{api: api, router: r, reg: reg}
}

func state(r *embedder.Router, name string) embedder.CircuitState {
	for _, p := range r.Providers() {
		if p.Name == name {
			return p.State
		}
	}
	return -1
}

func TestCircuitOpensFallsBackAndRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	model := b.api.Model

	out, err := b.router.Embed(ctx, []string{"hello"}, "", 0)
	require.NoError(t, err)
	require.Equal(t, "api", out.Provider)
	require.Equal(t, model, out.Model)
	require.Equal(t, model, b.router.DefaultModel().Name)

	// The API goes down: each call falls back to hashing; the second failure
	// opens the circuit.
	b.api.SetDown(&embeddertest.Failure{Status: http.StatusInternalServerError, Body: `{"error":{"message":"upstream exploded"}}`})
	for range 2 {
		out, err = b.router.Embed(ctx, []string{"hello"}, "", 0)
		require.NoError(t, err)
		require.Equal(t, "hashing", out.Provider)
		require.Equal(t, hashing.New(384).Model(), out.Model)
		require.Equal(t, 384, out.Dimensions)
	}
	require.Equal(t, embedder.CircuitOpen, state(b.router, "api"))
	hits := b.api.Requests()

	// While open the API is not called at all.
	out, err = b.router.Embed(ctx, []string{"hello"}, "", 0)
	require.NoError(t, err)
	require.Equal(t, "hashing", out.Provider)
	require.Equal(t, hits, b.api.Requests())

	// A request naming the API's model is never substituted.
	_, err = b.router.Embed(ctx, []string{"hello"}, model, 0)
	require.ErrorIs(t, err, embedder.ErrUnavailable)

	st := b.router.Providers()[0]
	require.Contains(t, st.LastError, "upstream exploded")
	require.NotContains(t, st.LastError, "sk-router-test")
	require.False(t, st.LastErrorAt.IsZero())

	require.InDelta(t, 3, metric(t, b.reg, "manushya_embedding_fallbacks_total", "api", "hashing"), 0)
	require.InDelta(t, float64(embedder.CircuitOpen), metric(t, b.reg, "manushya_embedding_circuit_state", "api"), 0)
	require.InDelta(t, 2, metric(t, b.reg, "manushya_embedding_provider_errors_total", "api", "unavailable"), 0)
	require.Positive(t, metric(t, b.reg, "manushya_embedding_tokens_total", "hashing"))

	// The API comes back: after the cool-down one trial call goes through
	// (half-open) and closes the circuit.
	b.api.SetDown(nil)
	require.Eventually(t, func() bool { return state(b.router, "api") == embedder.CircuitHalfOpen }, 5*time.Second, 2*time.Millisecond)
	out, err = b.router.Embed(ctx, []string{"hello"}, "", 0)
	require.NoError(t, err)
	require.Equal(t, "api", out.Provider)
	require.Equal(t, embedder.CircuitClosed, state(b.router, "api"))
}

func TestHalfOpenFailureReopens(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	b.api.SetDown(&embeddertest.Failure{Status: http.StatusBadGateway})
	for range 2 {
		_, err := b.router.Embed(ctx, []string{"x"}, "", 0)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return state(b.router, "api") == embedder.CircuitHalfOpen }, 5*time.Second, 2*time.Millisecond)
	out, err := b.router.Embed(ctx, []string{"x"}, "", 0)
	require.NoError(t, err)
	require.Equal(t, "hashing", out.Provider)
	require.Equal(t, embedder.CircuitOpen, state(b.router, "api"))
}

func TestRejectedInputNeitherFallsBackNorTrips(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for range 3 {
		b.api.FailNext(embeddertest.Failure{Status: http.StatusBadRequest, Body: `{"error":{"message":"too long"}}`})
		_, err := b.router.Embed(context.Background(), []string{"x"}, "", 0)
		require.ErrorIs(t, err, embedder.ErrRejected)
	}
	require.Equal(t, embedder.CircuitClosed, state(b.router, "api"))
}

func TestModelAndDimensionChecks(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	_, err := b.router.Embed(ctx, []string{"x"}, "no-such-model", 0)
	require.ErrorIs(t, err, embedder.ErrUnknownModel)
	_, err = b.router.Embed(ctx, []string{"x"}, "", 100)
	require.ErrorIs(t, err, embedder.ErrDimensions)
	out, err := b.router.Embed(ctx, []string{"x"}, hashing.New(384).Model(), 384)
	require.NoError(t, err)
	require.Equal(t, "hashing", out.Provider)
	require.Zero(t, b.api.Requests())
}

func testCache(t *testing.T, store kv.Store) {
	b := setup(t, embedder.NewCache(store, time.Minute))
	ctx := context.Background()
	out, err := b.router.Embed(ctx, []string{"alpha", "beta", "alpha"}, "", 0)
	require.NoError(t, err)
	require.Zero(t, out.Cached)
	require.Equal(t, out.Vectors[0], out.Vectors[2])
	require.Equal(t, []int{2}, b.api.Batches(), "duplicates embedded once")

	again, err := b.router.Embed(ctx, []string{"beta", "gamma", "alpha", "beta"}, "", 0)
	require.NoError(t, err)
	require.Equal(t, 3, again.Cached, "every text answered by the cache counts, repeats too")
	require.Equal(t, []int{2, 1}, b.api.Batches(), "only the miss reaches the provider")
	require.Equal(t, out.Vectors[1], again.Vectors[0])
	require.Equal(t, out.Vectors[0], again.Vectors[2])
	require.Len(t, again.Vectors[1], 384)
	require.Positive(t, again.PromptTokens)
}

func TestCacheServesWhileCircuitOpen(t *testing.T) {
	t.Parallel()
	b := setup(t, embedder.NewCache(kv.NewMemory(), time.Minute))
	ctx := context.Background()
	model := b.api.Model
	first, err := b.router.Embed(ctx, []string{"cached"}, model, 0)
	require.NoError(t, err)
	b.api.SetDown(&embeddertest.Failure{Status: http.StatusInternalServerError})
	for range 2 {
		_, err = b.router.Embed(ctx, []string{"fresh"}, "", 0)
		require.NoError(t, err)
	}
	require.Equal(t, embedder.CircuitOpen, state(b.router, "api"))

	out, err := b.router.Embed(ctx, []string{"cached"}, model, 0)
	require.NoError(t, err)
	require.Equal(t, "api", out.Provider)
	require.Equal(t, 1, out.Cached)
	require.Equal(t, first.Vectors, out.Vectors)
	_, err = b.router.Embed(ctx, []string{"cached", "fresh"}, model, 0)
	require.ErrorIs(t, err, embedder.ErrUnavailable)
}

func TestCacheDownStillServes(t *testing.T) {
	t.Parallel()
	store := kv.NewMemory()
	require.NoError(t, store.Close())
	b := setup(t, embedder.NewCache(store, time.Minute))
	for range 2 {
		out, err := b.router.Embed(context.Background(), []string{"x"}, "", 0)
		require.NoError(t, err)
		require.Equal(t, "api", out.Provider)
		require.Zero(t, out.Cached)
	}
	require.InDelta(t, 2, metric(t, b.reg, "manushya_embedding_cache_lookups_total", "error"), 0)
}

func TestCacheInProcess(t *testing.T) {
	t.Parallel()
	testCache(t, kv.NewMemory())
}

func TestCacheRedis(t *testing.T) {
	t.Parallel()
	url := os.Getenv("MANUSHYA_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	store, err := kv.Open(context.Background(), url)
	require.NoError(t, err, "this test needs Redis: run `make setup`, or set MANUSHYA_TEST_REDIS_URL")
	t.Cleanup(func() { _ = store.Close() })
	// The model name is random, so the keys are this test's alone; they expire
	// after the cache TTL.
	testCache(t, store)
}

// metric sums the samples of a counter or gauge whose labels include all of
// labels (none: every sample).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var values []string
			for _, l := range m.GetLabel() {
				values = append(values, l.GetValue())
			}
			if !containsAll(values, labels) {
				continue
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// BenchmarkHashing384 measures the hashing embedder at 384 dimensions on texts
// of memory length (about 150 characters).
func BenchmarkHashing384(b *testing.B) {
	p := embedder.Hashing(384)
	texts := make([]string, 32)
	for i := range texts {
		texts[i] = fmt.Sprintf("Client meeting notes %d: discussed retirement planning, moving the portfolio to index funds, and the tax report due next Tuesday.", i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Embed(ctx, texts, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(texts))/b.Elapsed().Seconds(), "texts/s")
}
