package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// BenchmarkGetIdentity measures GetIdentity on the real identity service, directly
// over gRPC and through the REST gateway, in one run, and reports each transport's
// latency percentiles. The difference is what the gateway adds.
//
//	go test ./cmd/manushya/app -run '^$' -bench GetIdentity -benchtime 20000x
func BenchmarkGetIdentity(b *testing.B) {
	s := newStack(b)
	// Shadow mode: limits are evaluated (their cost is part of the figure) but a
	// benchmark far above the default per-role rate is not refused.
	a := s.start(b, "all", "MANUSHYA_RATELIMIT_SHADOW=true")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "bench", "Bench")
	require.NoError(b, err)

	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(b, err)
	defer func() { _ = conn.Close() }()
	client := identityv1.NewIdentityServiceClient(conn)
	authed := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)
	created, err := client.CreateIdentity(authed, &identityv1.CreateIdentityRequest{ExternalId: "bench-user"})
	require.NoError(b, err)
	id := created.GetIdentity().GetId()

	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	url := fmt.Sprintf("http://%s/v1/identity/%s", a.HTTPAddr(), id)

	b.Run("grpc", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			if _, err := client.GetIdentity(authed, &identityv1.GetIdentityRequest{Id: id}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
	b.Run("rest", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header.Set("X-API-Key", boot.APIKey)
			resp, err := httpClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
