package ratelimit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
)

// everyScope puts a limit on each scope, so a request is decided on four counters
// at once (one script call on Redis).
func everyScope() []ratelimit.Limit {
	return []ratelimit.Limit{
		{ID: "tenant", Scope: ratelimit.ScopeTenant, Rate: 3, Period: time.Minute},
		{ID: "role", Scope: ratelimit.ScopeRole, Rate: 100, Period: time.Minute},
		{ID: "identity", Scope: ratelimit.ScopeIdentity, Rate: 2, Period: time.Minute},
		{ID: "key", Scope: ratelimit.ScopeAPIKey, Rate: 50, Period: time.Hour},
	}
}

func refusedKey(t *testing.T, err error) string {
	t.Helper()
	require.Equal(t, codes.ResourceExhausted, status.Code(err), err)
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()["key"]
		}
	}
	t.Fatal("no ErrorInfo in the refusal")
	return ""
}

// TestSeveralLimitsInOneDecision: every applicable counter is counted on each
// request and the request is refused by whichever is exhausted, with the headers of
// the tightest; Redis and the in-process backend agree.
func TestSeveralLimitsInOneDecision(t *testing.T) {
	t.Parallel()
	rc := redisClient(t)
	for name, client := range map[string]redis.UniversalClient{"redis": rc, "in-process": nil} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lim, err := ratelimit.New(ratelimit.Options{Redis: client, Defaults: everyScope()})
			require.NoError(t, err)
			cl := serve(t, lim)
			c := newCaller("user")
			policy := `"tenant";q=3;w=60, "role";q=100;w=60, "identity";q=2;w=60, "key";q=50;w=3600`
			// The identity limit (2) is the tightest: 1 left, then 0.
			for i, want := range []string{"1", "0"} {
				var hdr metadata.MD
				_, err := cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
				require.NoError(t, err, "request %d", i)
				require.Equal(t, []string{policy}, hdr.Get("ratelimit-policy"))
				require.Equal(t, []string{want}, hdr.Get("x-ratelimit-remaining"))
				require.Equal(t, []string{"2"}, hdr.Get("x-ratelimit-limit"))
				require.Regexp(t, `^"identity";r=`+want+`;t=\d+$`, hdr.Get("ratelimit")[0])
			}
			var hdr metadata.MD
			_, err = cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
			require.Equal(t, "{"+c.tenant+"}:identity:"+c.identity+":*", refusedKey(t, err))
			require.Equal(t, []string{"2"}, hdr.Get("x-ratelimit-limit"))
			require.NotEmpty(t, hdr.Get("retry-after"))

			// Each counter decided on its own: the tenant counter took all three
			// requests, so another identity of the tenant meets the tenant limit.
			other := newCaller("user")
			other.tenant = c.tenant
			_, err = cl.GetHealth(other.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
			require.Equal(t, "{"+c.tenant+"}:tenant:*", refusedKey(t, err))
			require.Equal(t, []string{"3"}, hdr.Get("x-ratelimit-limit"))

			ctx := context.Background()
			for key, want := range map[string]int64{
				"{" + c.tenant + "}:role:*:" + c.identity + ":*":         97,
				"{" + c.tenant + "}:api_key:" + c.key + ":*":             47,
				"{" + other.tenant + "}:role:*:" + other.identity + ":*": 99,
			} {
				st, err := lim.State(ctx, key)
				require.NoError(t, err, key)
				require.Equal(t, want, st.Remaining, key)
			}
			if client == nil {
				return
			}
			// The counters are in Redis under the tenant's hash tag, with a TTL.
			keys, err := rc.Keys(ctx, "rate:{"+c.tenant+"}:*").Result()
			require.NoError(t, err)
			require.Len(t, keys, 7, "four counters of the first caller, three of the other (the tenant one is shared)")
			for _, k := range keys {
				require.True(t, strings.HasPrefix(k, "rate:{"+c.tenant+"}:"), k)
				ttl, err := rc.TTL(ctx, k).Result()
				require.NoError(t, err)
				require.Positive(t, ttl, k)
			}
		})
	}
}

// TestSeveralLimitsWithRedisDown: the local fallback decides every counter of the
// request, as Redis would have.
func TestSeveralLimitsWithRedisDown(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })
	lim, err := ratelimit.New(ratelimit.Options{Redis: dead, Defaults: everyScope()})
	require.NoError(t, err)
	cl := serve(t, lim)
	c := newCaller("user")
	for range 2 {
		var hdr metadata.MD
		_, err := cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
		require.NoError(t, err)
		require.Equal(t, []string{"2"}, hdr.Get("x-ratelimit-limit"))
	}
	_, err = cl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{})
	require.Equal(t, "{"+c.tenant+"}:identity:"+c.identity+":*", refusedKey(t, err))
	other := newCaller("user")
	other.tenant = c.tenant
	_, err = cl.GetHealth(other.ctx(), &adminv1.GetHealthRequest{})
	require.Equal(t, "{"+c.tenant+"}:tenant:*", refusedKey(t, err))

	// Open fallback: no counter, no headers, never refused.
	open, err := ratelimit.New(ratelimit.Options{Redis: dead, Defaults: everyScope(), Fallback: ratelimit.FallbackOpen})
	require.NoError(t, err)
	ocl := serve(t, open)
	for range 4 {
		var hdr metadata.MD
		_, err := ocl.GetHealth(c.ctx(), &adminv1.GetHealthRequest{}, grpc.Header(&hdr))
		require.NoError(t, err)
		require.Empty(t, hdr.Get("ratelimit-policy"))
	}
}
