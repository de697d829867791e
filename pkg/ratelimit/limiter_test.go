package ratelimit_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/bus"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
)

var access = authz.Access{Permission: "memory.search", Resource: "memory", Action: "search"}

func perMinute(rate int64) []ratelimit.Limit {
	return []ratelimit.Limit{{Scope: ratelimit.ScopeRole, Rate: rate, Period: time.Minute}}
}

func TestBurstIsRefusedWithHeaders(t *testing.T) {
	t.Parallel()
	for name, client := range map[string]redis.UniversalClient{"redis": redisClient(t), "in-process": nil} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lim, err := ratelimit.New(ratelimit.Options{Redis: client, Defaults: perMinute(2)})
			require.NoError(t, err)
			cl := serve(t, lim)
			c := newCaller("user")
			for i, want := range []string{"1", "0"} {
				var hdr metadata.MD
				_, err := cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
				require.NoError(t, err, "request %d", i)
				require.Equal(t, []string{want}, hdr.Get("x-ratelimit-remaining"))
				require.Equal(t, []string{"2"}, hdr.Get("x-ratelimit-limit"))
				require.Equal(t, []string{`"role";q=2;w=60`}, hdr.Get("ratelimit-policy"))
				require.Regexp(t, `^"role";r=`+want+`;t=\d+$`, hdr.Get("ratelimit")[0])
			}
			var hdr metadata.MD
			_, err = cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
			require.Equal(t, codes.ResourceExhausted, status.Code(err), err)
			require.Equal(t, []string{"0"}, hdr.Get("x-ratelimit-remaining"))
			require.NotEmpty(t, hdr.Get("retry-after"))
			var info *errdetails.ErrorInfo
			var retry *errdetails.RetryInfo
			for _, d := range status.Convert(err).Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.RetryInfo:
					retry = d
				}
			}
			require.NotNil(t, info)
			require.Equal(t, "ERROR_REASON_RATE_LIMITED", info.GetReason())
			require.Equal(t, "{"+c.tenant+"}:role:*:"+c.identity+":*", info.GetMetadata()["key"])
			require.NotNil(t, retry)
			require.Positive(t, retry.GetRetryDelay().AsDuration())

			// Another identity of the same tenant has its own counter.
			other := newCaller("user")
			other.tenant = c.tenant
			_, err = cl.GetHealth(other.ctx(), &adminv1.GetHealthRequest{})
			require.NoError(t, err)

			// State reads without consuming; Reset gives the whole limit back.
			key := info.GetMetadata()["key"]
			st, err := lim.State(context.Background(), key)
			require.NoError(t, err)
			require.Zero(t, st.Remaining)
			require.Positive(t, st.RetryAfter)
			require.NoError(t, lim.Reset(context.Background(), key))
			st, err = lim.State(context.Background(), key)
			require.NoError(t, err)
			require.EqualValues(t, 2, st.Remaining)
			_, err = cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{})
			require.NoError(t, err)

			_, err = lim.State(context.Background(), "{"+c.tenant+"}:identity:x:*")
			require.ErrorIs(t, err, ratelimit.ErrUnknownKey)
		})
	}
}

func TestMostSpecificLimitWins(t *testing.T) {
	t.Parallel()
	c := newCaller("user,agent")
	other := uuid.NewString()
	stored := []ratelimit.Limit{
		// A global default on the memory group, for every role.
		{ID: "global-memory", Scope: ratelimit.ScopeRole, RouteGroup: "memory", Rate: 100, Period: time.Minute},
		// Overridden for this tenant and the agent role on searches.
		{ID: "tenant-agent-search", TenantID: c.tenant, Scope: ratelimit.ScopeRole, Subject: "agent", RouteGroup: "memory.search", Rate: 1, Period: time.Minute},
		// Another tenant's limit never applies here.
		{ID: "other-tenant", TenantID: other, Scope: ratelimit.ScopeTenant, Rate: 1, Period: time.Hour},
		// A route group that only shares a prefix of letters does not match.
		{ID: "mem", Scope: ratelimit.ScopeTenant, RouteGroup: "mem", Rate: 1, Period: time.Hour},
	}
	lim, err := ratelimit.New(ratelimit.Options{Source: source{func() []ratelimit.Limit { return stored }}, Defaults: perMinute(1000)})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, lim.Allow(ctx, c.principal(), access))
	err = lim.Allow(ctx, c.principal(), access)
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.Contains(t, err.Error(), "1 per 1m0s")
	// Writes are under the global memory default, not the search override.
	write := authz.Access{Permission: "memory.write", Resource: "memory", Action: "write"}
	for range 5 {
		require.NoError(t, lim.Allow(ctx, c.principal(), write))
	}
	st, err := lim.State(ctx, "{"+c.tenant+"}:role:*:"+c.identity+":memory")
	require.NoError(t, err)
	require.Equal(t, "global-memory", st.Limit.ID)
	require.EqualValues(t, 95, st.Remaining)
}

func TestShadowModeReportsOnly(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	defaults := perMinute(1)
	defaults[0].Shadow = true
	lim, err := ratelimit.New(ratelimit.Options{Defaults: defaults, Registerer: reg})
	require.NoError(t, err)
	c := newCaller("user")
	for range 3 {
		require.NoError(t, lim.Allow(context.Background(), c.principal(), access))
	}
	n, err := testutil.GatherAndCount(reg, "manushya_ratelimit_decisions_total")
	require.NoError(t, err)
	require.Equal(t, 2, n, "allowed and shadow_limited series")
}

func TestRedisDownNeverFails(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every Redis call fails at once.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })

	t.Run("local fallback keeps limiting", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		lim, err := ratelimit.New(ratelimit.Options{Redis: dead, Defaults: perMinute(2), Registerer: reg})
		require.NoError(t, err)
		cl := serve(t, lim)
		c := newCaller("user")
		for range 2 {
			_, err := cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{})
			require.NoError(t, err)
		}
		_, err = cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{})
		require.Equal(t, codes.ResourceExhausted, status.Code(err))
		require.Positive(t, testutil.ToFloat64(gauge(t, reg, "manushya_ratelimit_fallback_active")))
	})
	t.Run("fail open lets requests through", func(t *testing.T) {
		t.Parallel()
		lim, err := ratelimit.New(ratelimit.Options{Redis: dead, Defaults: perMinute(1), Fallback: ratelimit.FallbackOpen})
		require.NoError(t, err)
		cl := serve(t, lim)
		c := newCaller("user")
		for range 3 {
			var hdr metadata.MD
			_, err := cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
			require.NoError(t, err)
			require.Empty(t, hdr.Get("x-ratelimit-remaining"), "no counter, no headers")
		}
	})
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func TestChangesApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	ns, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)

	c := newCaller("user")
	var shadow atomic.Bool
	src := source{func() []ratelimit.Limit {
		return []ratelimit.Limit{{TenantID: c.tenant, Scope: ratelimit.ScopeTenant, Rate: 1, Period: time.Hour, Shadow: shadow.Load()}}
	}}
	lim, err := ratelimit.New(ratelimit.Options{Source: src, Defaults: []ratelimit.Limit{}, RefreshInterval: time.Hour})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = lim.Watch(ctx, nc) }()

	require.NoError(t, lim.Allow(context.Background(), c.principal(), access))
	require.Error(t, lim.Allow(context.Background(), c.principal(), access))

	// The operator switches the limit to shadow mode; the counter stays exhausted
	// but no longer refuses.
	shadow.Store(true)
	data, _ := json.Marshal(map[string]string{"tenant_id": c.tenant})
	ev, err := bus.NewEvent(c.tenant, ratelimit.EventUpdated, "manushya/usage", "", json.RawMessage(data))
	require.NoError(t, err)
	payload, err := ev.MarshalCloudEvent()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		// Published until the subscription (started concurrently) has seen one.
		_ = nc.Publish(ev.NATSSubject(), payload)
		return lim.Allow(context.Background(), c.principal(), access) == nil
	}, 5*time.Second, 20*time.Millisecond)
}

func TestKeys(t *testing.T) {
	t.Parallel()
	tenant, id := uuid.NewString(), uuid.NewString()
	for _, tc := range []struct {
		limit  ratelimit.Limit
		caller string
		want   string
	}{
		{ratelimit.Limit{Scope: ratelimit.ScopeTenant}, "", "{" + tenant + "}:tenant:*"},
		{ratelimit.Limit{Scope: ratelimit.ScopeRole, Subject: "agent", RouteGroup: "memory"}, id, "{" + tenant + "}:role:agent:" + id + ":memory"},
		{ratelimit.Limit{Scope: ratelimit.ScopeIdentity, RouteGroup: "memory.search"}, id, "{" + tenant + "}:identity:" + id + ":memory.search"},
		{ratelimit.Limit{Scope: ratelimit.ScopeAPIKey}, id, "{" + tenant + "}:api_key:" + id + ":*"},
	} {
		key := ratelimit.Key(tenant, tc.limit, tc.caller)
		require.Equal(t, tc.want, key)
		pk, ok := ratelimit.ParseKey(key)
		require.True(t, ok, key)
		require.Equal(t, tenant, pk.Tenant)
		require.Equal(t, tc.limit.Scope, pk.Scope)
		require.Equal(t, tc.limit.RouteGroup, pk.RouteGroup)
		require.Equal(t, tc.caller, pk.Caller)
	}
	for _, bad := range []string{"", "tenant:role", "{}:tenant:*", "{t}:nope:*", "{t}:role:x:*"} {
		_, ok := ratelimit.ParseKey(bad)
		require.False(t, ok, bad)
	}
}

// TestInternalServicesAreNotLimited: the suite's own services calling on their own
// behalf (an export reading memories, the embedder calling the embedding service)
// are not the tenant's traffic, while a tenant's identity of kind service is a
// caller like any other and meets the tenant's limit.
func TestInternalServicesAreNotLimited(t *testing.T) {
	t.Parallel()
	tenant := uuid.NewString()
	stored := []ratelimit.Limit{{ID: "tenant", TenantID: tenant, Scope: ratelimit.ScopeTenant, Rate: 1, Period: time.Hour}}
	lim, err := ratelimit.New(ratelimit.Options{Source: source{func() []ratelimit.Limit { return stored }}, Defaults: perMinute(1000)})
	require.NoError(t, err)
	ctx := context.Background()
	internal := &auth.Principal{TenantID: tenant, Kind: auth.KindService, Service: "identity", Roles: []string{auth.RoleAdmin}}
	for range 5 {
		require.NoError(t, lim.Allow(ctx, internal, access))
	}
	backend := &auth.Principal{TenantID: tenant, IdentityID: uuid.NewString(), Kind: auth.KindService, Roles: []string{auth.RoleUser}}
	require.NoError(t, lim.Allow(ctx, backend, access))
	require.Equal(t, codes.ResourceExhausted, status.Code(lim.Allow(ctx, backend, access)))
}
