package ratelimit_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
)

func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	raw := os.Getenv("MANUSHYA_TEST_REDIS_URL")
	if raw == "" {
		raw = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(raw)
	require.NoError(t, err)
	c := redis.NewClient(opts)
	require.NoError(t, c.Ping(context.Background()).Err(), "Redis must run (make setup)")
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// monitoring answers GetHealth ("monitoring.read") with an empty response: a cheap
// RPC to put behind the interceptor chain.
type monitoring struct {
	adminv1.UnimplementedMonitoringServiceServer
}

func (monitoring) GetHealth(context.Context, *adminv1.GetHealthRequest) (*adminv1.GetHealthResponse, error) {
	return &adminv1.GetHealthResponse{}, nil
}

// principalAuth takes "tenant|identity|role[,role]|apikey" as the API key.
var principalAuth = auth.AuthenticatorFunc(func(_ context.Context, cred auth.Credential) (*auth.Principal, error) {
	parts := strings.Split(cred.Value, "|")
	p := &auth.Principal{TenantID: parts[0], IdentityID: parts[1], Roles: strings.Split(parts[2], ",")}
	if len(parts) > 3 {
		p.APIKeyID = parts[3]
	}
	return p, nil
})

// serve runs a gRPC server with the full chain and lim, returning a client.
func serve(t testing.TB, lim grpcserver.RateLimiter) adminv1.MonitoringServiceClient {
	t.Helper()
	opts := grpcserver.Options{
		Authenticator: principalAuth, Authorizer: allowAll{}, Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.DiscardHandler),
	}
	if lim != nil {
		opts.RateLimiter = lim
	}
	srv, err := grpcserver.New(opts)
	require.NoError(t, err)
	adminv1.RegisterMonitoringServiceServer(srv, monitoring{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return adminv1.NewMonitoringServiceClient(conn)
}

// allowAll leaves authorization out of what these tests measure.
type allowAll struct{}

func (allowAll) Authorize(context.Context, *auth.Principal, authz.Access) error { return nil }

type caller struct {
	tenant, identity, key string
	roles                 string
}

func newCaller(roles string) caller {
	return caller{tenant: uuid.NewString(), identity: uuid.NewString(), key: uuid.NewString(), roles: roles}
}

func (c caller) ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key",
		c.tenant+"|"+c.identity+"|"+c.roles+"|"+c.key)
}

func (c caller) principal() *auth.Principal {
	return &auth.Principal{TenantID: c.tenant, IdentityID: c.identity, Roles: strings.Split(c.roles, ","), APIKeyID: c.key}
}

// source is a LimitSource over a fixed list, standing in for the usage service's
// PostgreSQL store (tested there).
type source struct {
	limits func() []ratelimit.Limit
}

func (s source) Limits(_ context.Context, tenant string) ([]ratelimit.Limit, error) {
	var out []ratelimit.Limit
	for _, l := range s.limits() {
		if l.TenantID == "" || l.TenantID == tenant {
			out = append(out, l)
		}
	}
	return out, nil
}
