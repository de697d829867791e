package usage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
	"github.com/manushya-ai/manushya/services/usage"
)

// A limit created through the admin API reaches a limiter of another process (its
// own pool, its own NATS connection) through the outbox and the bus, without a
// restart.
func TestLimitChangeReachesOtherProcesses(t *testing.T) {
	t.Parallel()
	ns, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	ctx := context.Background()
	bs, err := bus.Connect(ctx, ns.URL(), "usage")
	require.NoError(t, err)
	t.Cleanup(bs.Close)
	_, err = bs.EnsureStream(ctx)
	require.NoError(t, err)
	var db *pgtest.DB
	b := setup(t, func(d *pgtest.DB) usage.Deps { db = d; return usage.Deps{Bus: bs} })
	require.NoError(t, b.mod.Start(ctx))
	t.Cleanup(func() { _ = b.mod.Stop(context.Background()) })

	// The "memory" process: its own pool and bus connection, limits cached long.
	pool, err := postgres.Connect(ctx, db.AppURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	other, err := bus.Connect(ctx, ns.URL(), "memory")
	require.NoError(t, err)
	t.Cleanup(other.Close)
	lim, err := ratelimit.New(ratelimit.Options{
		Source: usage.NewLimitSource(pool), Defaults: []ratelimit.Limit{}, RefreshInterval: time.Hour,
	})
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go func() { _ = lim.Watch(wctx, other.Conn) }()

	p := &auth.Principal{TenantID: b.admin.tenant, IdentityID: uuid.NewString(), Roles: []string{"user"}}
	for range 3 {
		require.NoError(t, lim.Allow(ctx, p, accessMemory), "no limit yet")
	}
	_, err = b.limits.CreateRateLimit(b.admin.ctx(), &adminv1.CreateRateLimitRequest{Limit: &adminv1.RateLimit{
		TenantId: b.admin.tenant, Scope: adminv1.RateLimitScope_RATE_LIMIT_SCOPE_IDENTITY, RouteGroup: "memory",
		Rate: 1, Period: durationpb.New(time.Hour),
	}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return status.Code(lim.Allow(ctx, p, accessMemory)) == codes.ResourceExhausted
	}, 10*time.Second, 20*time.Millisecond)
}
