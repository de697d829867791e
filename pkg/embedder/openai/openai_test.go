package openai_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/embedder"
	"github.com/manushya-ai/manushya/pkg/embedder/embeddertest"
	"github.com/manushya-ai/manushya/pkg/embedder/hashing"
	"github.com/manushya-ai/manushya/pkg/embedder/openai"
)

const key = "sk-test-0123456789abcdef"

// sleeps records the waits between attempts instead of spending them.
type sleeps struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return ctx.Err()
}

func (s *sleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

func newClient(t *testing.T, api *embeddertest.Server, mod func(*openai.Config)) (*openai.Client, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	cfg := openai.Config{BaseURL: api.URL + "/v1", APIKey: key, Model: api.Model, Dimensions: api.Dims, Sleep: sl.sleep}
	if mod != nil {
		mod(&cfg)
	}
	c, err := openai.New(cfg)
	require.NoError(t, err)
	return c, sl
}

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("memory number %d about hiking", i)
	}
	return out
}

func TestEmbedBatches(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "text-embedding-test", 16)
	c, _ := newClient(t, api, func(c *openai.Config) { c.MaxBatchSize = 3 })
	in := texts(7)
	res, err := c.Embed(context.Background(), in, 0)
	require.NoError(t, err)
	want := hashing.New(16).Embed(in)
	for i := range want {
		require.InDeltaSlice(t, want[i], res.Vectors[i], 1e-6, "vectors in request order")
	}
	batches := api.Batches()
	slices.Sort(batches)
	require.Equal(t, []int{1, 3, 3}, batches)
	tokens := 0
	for _, s := range in {
		tokens += len(s)
	}
	require.Equal(t, tokens, res.PromptTokens, "usage as the server reports it")
	require.Equal(t, embedder.Model{Name: "text-embedding-test", Dimensions: 16}, c.Model())
}

func TestRetryAfterThenSuccess(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 8)
	api.FailNext(
		embeddertest.Failure{Status: http.StatusTooManyRequests, RetryAfter: "2", Body: `{"error":{"message":"slow down"}}`},
		embeddertest.Failure{Status: http.StatusServiceUnavailable},
	)
	c, sl := newClient(t, api, func(c *openai.Config) { c.InitialBackoff = 100 * time.Millisecond })
	res, err := c.Embed(context.Background(), []string{"a b"}, 0)
	require.NoError(t, err)
	require.Len(t, res.Vectors, 1)
	require.Equal(t, 3, api.Requests())
	waits := sl.get()
	require.Len(t, waits, 2)
	require.Equal(t, 2*time.Second, waits[0], "Retry-After honoured")
	require.Positive(t, waits[1])
	require.LessOrEqual(t, waits[1], 200*time.Millisecond, "second backoff within 2 × initial")
}

func TestRetryAfterHTTPDate(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 8)
	api.FailNext(embeddertest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat)})
	c, sl := newClient(t, api, nil)
	_, err := c.Embed(context.Background(), []string{"a"}, 0)
	require.NoError(t, err)
	waits := sl.get()
	require.Len(t, waits, 1)
	require.Greater(t, waits[0], time.Second)
	require.LessOrEqual(t, waits[0], 5*time.Second)
}

func TestRetryAfterTooLongFailsFast(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 8)
	api.FailNext(embeddertest.Failure{Status: http.StatusTooManyRequests, RetryAfter: "3600"})
	c, sl := newClient(t, api, nil)
	_, err := c.Embed(context.Background(), []string{"a"}, 0)
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, time.Hour, apiErr.RetryAfter)
	require.Empty(t, sl.get())
	require.Equal(t, 1, api.Requests())
}

func TestGivesUpAfterMaxRetries(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 8)
	api.SetDown(&embeddertest.Failure{Status: http.StatusInternalServerError, Body: `{"error":{"message":"boom"}}`})
	c, sl := newClient(t, api, func(c *openai.Config) { c.MaxRetries = 2 })
	_, err := c.Embed(context.Background(), []string{"a"}, 0)
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusInternalServerError, apiErr.StatusCode)
	require.Equal(t, "boom", apiErr.Message)
	require.NotErrorIs(t, err, embedder.ErrRejected)
	require.Equal(t, 3, api.Requests())
	require.Len(t, sl.get(), 2)
}

func TestRejectedInputIsNotRetried(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 8)
	api.FailNext(embeddertest.Failure{Status: http.StatusBadRequest, Body: `{"error":{"message":"maximum context length exceeded"}}`})
	c, _ := newClient(t, api, nil)
	_, err := c.Embed(context.Background(), []string{"a"}, 0)
	require.ErrorIs(t, err, embedder.ErrRejected)
	require.ErrorContains(t, err, "maximum context length")
	require.Equal(t, 1, api.Requests())
}

func TestSecretsNeverInErrors(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 8)
	// The server echoes the wrong key it received, as real APIs partly do.
	wrong := "sk-wrong-secret-key-987654"
	c, _ := newClient(t, api, func(c *openai.Config) { c.APIKey = wrong })
	_, err := c.Embed(context.Background(), []string{"a"}, 0)
	require.ErrorContains(t, err, "HTTP 401")
	require.NotContains(t, err.Error(), wrong)

	// Nothing listens here; the transport error quotes the URL, password and all.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	c, err = openai.New(openai.Config{
		BaseURL: "http://user:hunter2-password@" + addr + "/v1", APIKey: wrong, Model: "m", MaxRetries: -1,
	})
	require.NoError(t, err)
	_, err = c.Embed(context.Background(), []string{"a"}, 0)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2-password")
	require.NotContains(t, err.Error(), wrong)
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(release) })
	c, err := openai.New(openai.Config{BaseURL: stuck.URL, Model: "m", Timeout: 20 * time.Millisecond, MaxRetries: -1})
	require.NoError(t, err)
	_, err = c.Embed(context.Background(), []string{"a"}, 0)
	require.ErrorContains(t, err, "no answer within 20ms")
}

func TestDimensions(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 8)
	// The server makes 8-dimensional vectors; a client expecting 4 refuses them
	// and does not retry.
	c, sl := newClient(t, api, func(c *openai.Config) { c.Dimensions = 4 })
	_, err := c.Embed(context.Background(), []string{"a"}, 0)
	require.ErrorContains(t, err, "8-dimensional embedding, want 4")
	require.Empty(t, sl.get())

	// A model that can shorten its vectors gets the "dimensions" parameter.
	c, _ = newClient(t, api, func(c *openai.Config) { c.SendDimensions = true })
	require.True(t, c.Model().DimensionsConfigurable)
	res, err := c.Embed(context.Background(), []string{"a"}, 4)
	require.NoError(t, err)
	require.Len(t, res.Vectors[0], 4)
	_, err = c.Embed(context.Background(), []string{"a"}, 16)
	require.ErrorIs(t, err, embedder.ErrDimensions)
}

func TestLearnsDimensions(t *testing.T) {
	t.Parallel()
	api := embeddertest.NewAPI(t, key, "m", 12)
	c, _ := newClient(t, api, func(c *openai.Config) { c.Dimensions = 0 })
	require.Zero(t, c.Model().Dimensions)
	res, err := c.Embed(context.Background(), []string{"a", "b"}, 0)
	require.NoError(t, err)
	require.Len(t, res.Vectors[1], 12)
	require.Equal(t, 12, c.Model().Dimensions)
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []openai.Config{
		{BaseURL: "http://x/v1"},
		{BaseURL: "ftp://x", Model: "m"},
		{BaseURL: "/relative", Model: "m"},
		{BaseURL: "http://x", Model: "m", SendDimensions: true},
		{BaseURL: "http://x", Model: "m", MaxBatchSize: -1},
	} {
		_, err := openai.New(cfg)
		require.Error(t, err)
	}
	_, err := openai.New(openai.Config{BaseURL: "http://u:secret-pw@x y", Model: "m"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret-pw")
	require.NotErrorIs(t, err, embedder.ErrRejected)
}
