package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// benchIdentity answers GetIdentity at once, so the benchmark measures transport
// and translation, not a service.
type benchIdentity struct {
	identityv1.UnimplementedIdentityServiceServer
	resp *identityv1.GetIdentityResponse
}

func (f *benchIdentity) GetIdentity(context.Context, *identityv1.GetIdentityRequest) (*identityv1.GetIdentityResponse, error) {
	return f.resp, nil
}

// BenchmarkGatewayOverhead compares GetIdentity called directly over gRPC with the
// same call through the REST gateway (HTTP/1.1 over loopback, keep-alive), both
// against an in-process upstream. The difference is what the gateway costs a
// REST client. p50/p99 are per-call latencies; ns/op is throughput-bound.
//
//	go test -run '^$' -bench BenchmarkGatewayOverhead -benchtime 20000x ./gateway/
func BenchmarkGatewayOverhead(b *testing.B) {
	const id = "0190a5f2-8c1e-7000-8000-000000000001"
	fake := &benchIdentity{resp: &identityv1.GetIdentityResponse{Identity: &identityv1.Identity{
		Id: id, TenantId: "0190a5f2-8c1e-7000-8000-0000000000aa", ExternalId: "user@example.com",
		Kind: identityv1.IdentityKind_IDENTITY_KIND_USER, Role: "user", Roles: []string{"reader"}, IsActive: true,
	}}}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	srv := grpc.NewServer()
	identityv1.RegisterIdentityServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	addr := lis.Addr().String()

	upstreams := map[string]string{}
	for _, key := range upstreamKeys {
		upstreams[key] = addr
	}
	_, url := startGateway(b, Config{Upstreams: upstreams})

	ctx := context.Background()
	b.Run("grpc", func(b *testing.B) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(b, err)
		defer func() { _ = conn.Close() }()
		client := identityv1.NewIdentityServiceClient(conn)
		req := &identityv1.GetIdentityRequest{Id: id}
		call := func() error {
			_, err := client.GetIdentity(ctx, req)
			return err
		}
		require.NoError(b, call()) // connect outside the measurement
		measure(b, call)
	})
	b.Run("rest", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		defer client.CloseIdleConnections()
		target := url + "/v1/identity/" + id
		call := func() error {
			resp, err := client.Get(target)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return &statusErr{resp.StatusCode}
			}
			return err
		}
		require.NoError(b, call())
		measure(b, call)
	})
}

type statusErr struct{ code int }

func (e *statusErr) Error() string { return http.StatusText(e.code) }

// measure runs call in the benchmark loop and reports latency percentiles in µs.
func measure(b *testing.B, call func() error) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, 1<<14)
	for b.Loop() {
		start := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(p int) float64 {
		return float64(lat[min(len(lat)-1, len(lat)*p/100)].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(50), "p50-µs")
	b.ReportMetric(at(99), "p99-µs")
}
