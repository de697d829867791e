package embedding_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/embedder/embeddertest"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/kv"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	"github.com/manushya-ai/manushya/services/embedding"
)

const apiKey = "sk-service-test-secret"

// serve runs the module on a real gRPC server with the full interceptor chain;
// every credential is an admin of one tenant.
func serve(t testing.TB, cfg embedding.Config) embeddingv1.EmbeddingServiceClient {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	mod, err := embedding.New(cfg, embedding.Deps{KV: kv.NewMemory(), Registerer: prometheus.NewRegistry(), Logger: quiet})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{
		Logger: quiet,
		Authenticator: auth.AuthenticatorFunc(func(context.Context, auth.Credential) (*auth.Principal, error) {
			return &auth.Principal{TenantID: "0190f5e4-7c4b-7a3e-9b1a-2f6d3c4e5a6b", IdentityID: "0190f5e4-7c4b-7a3e-9b1a-2f6d3c4e5a6c", Roles: []string{auth.RoleAdmin}}, nil
		}),
	})
	require.NoError(t, err)
	mod.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return embeddingv1.NewEmbeddingServiceClient(conn)
}

func ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", "mk_test_anything")
}

func requireField(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	require.Error(t, err)
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), st.Message())
	if field == "" {
		return
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	require.Contains(t, fields, field, st.Message())
}

func TestDefaultIsHashing384(t *testing.T) {
	t.Parallel()
	c := serve(t, embedding.Config{})
	resp, err := c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: []string{"I love hiking in the Alps", "tax report due Tuesday"}})
	require.NoError(t, err)
	require.Equal(t, "hashing", resp.GetProvider())
	require.Equal(t, "hashing-v1-384", resp.GetModel())
	require.EqualValues(t, 384, resp.GetDimensions())
	require.Len(t, resp.GetEmbeddings(), 2)
	for _, e := range resp.GetEmbeddings() {
		require.Len(t, e.GetValues(), 384)
	}
	require.Positive(t, resp.GetUsage().GetPromptTokens())
	require.Equal(t, resp.GetUsage().GetPromptTokens(), resp.GetUsage().GetTotalTokens())
	require.Zero(t, resp.GetCachedCount())

	models, err := c.ListModels(ctx(), &embeddingv1.ListModelsRequest{})
	require.NoError(t, err)
	require.Equal(t, "hashing-v1-384", models.GetDefaultModel())
	require.Len(t, models.GetProviders(), 1)
	p := models.GetProviders()[0]
	require.Equal(t, embeddingv1.ProviderKind_PROVIDER_KIND_HASHING, p.GetKind())
	require.Equal(t, embeddingv1.CircuitState_CIRCUIT_STATE_CLOSED, p.GetCircuitState())
	require.EqualValues(t, 384, p.GetModels()[0].GetDimensions())
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	c := serve(t, embedding.Config{MaxTextChars: 20, MaxTexts: 3})
	cases := []struct {
		name  string
		req   *embeddingv1.EmbedRequest
		field string
	}{
		{"no texts", &embeddingv1.EmbedRequest{}, "texts"},
		{"empty text", &embeddingv1.EmbedRequest{Texts: []string{"fine", ""}}, "texts[1]"},
		{"blank text", &embeddingv1.EmbedRequest{Texts: []string{" \n\t "}}, "texts[0]"},
		{"too long for the deployment", &embeddingv1.EmbedRequest{Texts: []string{"ok", strings.Repeat("é", 21)}}, "texts[1]"},
		{"too long for the API", &embeddingv1.EmbedRequest{Texts: []string{strings.Repeat("a", 100001)}}, "texts[0]"},
		{"too many", &embeddingv1.EmbedRequest{Texts: []string{"a", "b", "c", "d"}}, "texts"},
		{"too many for the API", &embeddingv1.EmbedRequest{Texts: make([]string, 2049)}, "texts"},
		{"unknown model", &embeddingv1.EmbedRequest{Texts: []string{"a"}, Model: "gpt-nope"}, "model"},
		{"dimensions of another model", &embeddingv1.EmbedRequest{Texts: []string{"a"}, Dimensions: 128}, "dimensions"},
		{"negative dimensions", &embeddingv1.EmbedRequest{Texts: []string{"a"}, Dimensions: -1}, "dimensions"},
	}
	for _, tc := range cases {
		_, err := c.Embed(ctx(), tc.req)
		requireField(t, err, codes.InvalidArgument, tc.field)
	}
	// Exactly at the limits is fine, and the own dimension may be named.
	_, err := c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: []string{"a", "b", strings.Repeat("é", 20)}, Dimensions: 384})
	require.NoError(t, err)

	_, err = c.Embed(context.Background(), &embeddingv1.EmbedRequest{Texts: []string{"a"}})
	requireField(t, err, codes.Unauthenticated, "")
}

// fullConfig is an OpenAI-compatible API (default, with hashing as fallback)
// and a local Model2Vec model reachable by name only.
func fullConfig(t *testing.T) (embedding.Config, *embeddertest.Server) {
	api := embeddertest.NewAPI(t, apiKey, "text-embedding-fake", 384)
	return embedding.Config{
		Providers: []embedding.ProviderConfig{
			{Name: "hashing", Type: "hashing"},
			{Name: "local", Type: "local", Path: embeddertest.WriteModel(t), Model: "tiny-m2v"},
			{
				Name: "api", Type: "openai_compatible", BaseURL: api.URL + "/v1", APIKey: apiKey,
				Model: api.Model, Dimensions: 384, MaxRetries: -1,
				BreakerFailures: 1, BreakerCoolDown: embedding.Duration(20 * time.Millisecond),
			},
		},
		Fallback: []string{"api", "hashing"},
	}, api
}

func TestProvidersFallbackAndCache(t *testing.T) {
	t.Parallel()
	cfg, api := fullConfig(t)
	c := serve(t, cfg)

	models, err := c.ListModels(ctx(), &embeddingv1.ListModelsRequest{})
	require.NoError(t, err)
	require.Equal(t, "text-embedding-fake", models.GetDefaultModel())
	var names []string
	var kinds []embeddingv1.ProviderKind
	for _, p := range models.GetProviders() {
		names = append(names, p.GetName())
		kinds = append(kinds, p.GetKind())
	}
	require.Equal(t, []string{"api", "hashing", "local"}, names)
	require.Equal(t, []embeddingv1.ProviderKind{
		embeddingv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, embeddingv1.ProviderKind_PROVIDER_KIND_HASHING,
		embeddingv1.ProviderKind_PROVIDER_KIND_LOCAL,
	}, kinds)

	// Served by the API, then from the cache.
	texts := []string{"retirement planning", "index funds"}
	resp, err := c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: texts})
	require.NoError(t, err)
	require.Equal(t, "api", resp.GetProvider())
	require.Zero(t, resp.GetCachedCount())
	resp, err = c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: texts})
	require.NoError(t, err)
	require.EqualValues(t, 2, resp.GetCachedCount())
	require.Zero(t, resp.GetUsage().GetPromptTokens(), "cache hits cost no tokens")
	require.Equal(t, 1, api.Requests())

	// The local model by name: known vector for "hello world".
	resp, err = c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: []string{"Hello world"}, Model: "tiny-m2v"})
	require.NoError(t, err)
	require.Equal(t, "local", resp.GetProvider())
	require.InDeltaSlice(t, []float32{0.70710677, 0.70710677, 0, 0}, resp.GetEmbeddings()[0].GetValues(), 1e-6)

	// The API goes down: the circuit opens, requests fall back to hashing, and
	// naming the API's model is UNAVAILABLE.
	api.SetDown(&embeddertest.Failure{Status: http.StatusServiceUnavailable, Body: "overloaded " + apiKey})
	resp, err = c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: []string{"new text"}})
	require.NoError(t, err)
	require.Equal(t, "hashing", resp.GetProvider())
	require.Equal(t, "hashing-v1-384", resp.GetModel())
	_, err = c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: []string{"new text"}, Model: "text-embedding-fake"})
	requireField(t, err, codes.Unavailable, "")
	require.NotContains(t, err.Error(), apiKey)

	models, err = c.ListModels(ctx(), &embeddingv1.ListModelsRequest{})
	require.NoError(t, err)
	p := models.GetProviders()[0]
	require.Contains(t, []embeddingv1.CircuitState{embeddingv1.CircuitState_CIRCUIT_STATE_OPEN, embeddingv1.CircuitState_CIRCUIT_STATE_HALF_OPEN}, p.GetCircuitState())
	require.Contains(t, p.GetLastError(), "HTTP 503")
	require.NotContains(t, p.GetLastError(), apiKey)
	require.NotNil(t, p.GetLastErrorTime())

	// It comes back: after the cool-down a trial call closes the circuit.
	api.SetDown(nil)
	require.Eventually(t, func() bool {
		resp, err := c.Embed(ctx(), &embeddingv1.EmbedRequest{Texts: []string{"back again"}})
		return err == nil && resp.GetProvider() == "api"
	}, 5*time.Second, 5*time.Millisecond)
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	bad := []embedding.Config{
		{Providers: []embedding.ProviderConfig{{Name: "x"}}},
		{Providers: []embedding.ProviderConfig{{Type: "carrier-pigeon"}}},
		{Providers: []embedding.ProviderConfig{{Type: "local"}}},
		{Providers: []embedding.ProviderConfig{{Type: "local", Path: t.TempDir()}}},
		{Providers: []embedding.ProviderConfig{{Type: "openai_compatible", BaseURL: "http://127.0.0.1:1/v1"}}},
		{Providers: []embedding.ProviderConfig{{Type: "openai_compatible", Model: "m", BaseURL: "http://x", APIKeyEnv: "MANUSHYA_TEST_SURELY_UNSET_KEY"}}},
		{Providers: []embedding.ProviderConfig{{Type: "hashing"}, {Type: "hashing"}}},
		{Providers: []embedding.ProviderConfig{{Type: "hashing"}}, Fallback: []string{"nope"}},
	}
	for i, cfg := range bad {
		_, err := embedding.New(cfg, embedding.Deps{})
		require.Error(t, err, "config %d", i)
	}

	ps, err := embedding.ParseProviders(`[{"name":"ollama","type":"openai_compatible","base_url":"http://127.0.0.1:11434/v1","model":"nomic-embed-text","dimensions":768,"timeout":"5s","api_key":"k"}]`)
	require.NoError(t, err)
	require.Equal(t, embedding.Duration(5*time.Second), ps[0].Timeout)
	require.NotContains(t, ps[0].String(), `"k"`)
	_, err = embedding.ParseProviders(`[{"name":"x","colour":"blue"}]`)
	require.ErrorContains(t, err, "colour")
	_, err = embedding.ParseProviders(`[{"timeout":"soon"}]`)
	require.Error(t, err)
}

// BenchmarkEmbedGRPC measures Embed of 32 texts (hashing, 384 dimensions) over
// a real gRPC connection with the full interceptor chain, and reports the
// latency percentiles.
func BenchmarkEmbedGRPC(b *testing.B) {
	c := serve(b, embedding.Config{})
	texts := make([]string, 32)
	for i := range texts {
		texts[i] = fmt.Sprintf("Client meeting notes %d: discussed retirement planning, moving the portfolio to index funds, and the tax report due next Tuesday.", i)
	}
	req := &embeddingv1.EmbedRequest{Texts: texts}
	cx := ctx()
	lat := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		start := time.Now()
		if _, err := c.Embed(cx, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat)*len(texts))/b.Elapsed().Seconds(), "texts/s")
}
