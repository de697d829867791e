package identity_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// BenchmarkAPIKeyVerify measures API key verification through the gRPC server: a
// client calls an RPC with X-API-Key and the full interceptor chain authenticates
// it. The RPC is TenantService.ListTenants with a tenant admin key that lacks the
// operator scope, so the call ends right after authentication and authorization
// and does no work of its own. "cached" answers from the in-process cache (Redis
// behind it); "uncached" has the cache off, so every call reads PostgreSQL
// (prefix table, then the key in a tenant transaction).
//
//	go test ./services/identity -run '^$' -bench BenchmarkAPIKeyVerify -benchtime 3000x
func BenchmarkAPIKeyVerify(b *testing.B) {
	for _, tc := range []struct {
		name    string
		noCache bool
	}{{"cached", false}, {"uncached", true}} {
		b.Run(tc.name, func(b *testing.B) {
			bundle := setupKMI(b, kmiOptions{bootstrap: true, noCache: tc.noCache})
			created, err := bundle.keys.CreateApiKey(as(bundle.adminA), &identityv1.CreateApiKeyRequest{Name: "bench", Scopes: []string{"*"}})
			require.NoError(b, err)
			ctx := as(created.GetKey())
			tenants := identityv1.NewTenantServiceClient(bundle.conn)
			call := func() {
				_, err := tenants.ListTenants(ctx, &identityv1.ListTenantsRequest{})
				if status.Code(err) != codes.PermissionDenied {
					b.Fatalf("want PermissionDenied after authentication, got %v", err)
				}
			}
			for range 50 {
				call()
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				call()
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[int(float64(len(lat)-1)*p)].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}
