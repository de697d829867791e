package ratelimit_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	"github.com/manushya-ai/manushya/pkg/ratelimit"
)

// BenchmarkInterceptorOverhead measures the limiter where it runs: two gRPC servers
// with the full interceptor chain, one with the Redis limiter and one without, called
// alternately in the same run so both see the same machine load. It reports the
// latency percentiles of each and the p50/p99 difference, the limiter's overhead.
//
//	go test ./pkg/ratelimit -run '^$' -bench InterceptorOverhead -benchtime 20000x
func BenchmarkInterceptorOverhead(b *testing.B) {
	benchOverhead(b, []ratelimit.Limit{{Scope: ratelimit.ScopeRole, Rate: 1_000_000, Period: time.Second}})
}

// BenchmarkInterceptorOverheadFourLimits is the same with a limit on every scope
// (tenant, role, identity, API key): four counters decided per request.
func BenchmarkInterceptorOverheadFourLimits(b *testing.B) {
	benchOverhead(b, []ratelimit.Limit{
		{Scope: ratelimit.ScopeTenant, Rate: 1_000_000, Period: time.Second},
		{Scope: ratelimit.ScopeRole, Rate: 1_000_000, Period: time.Second},
		{Scope: ratelimit.ScopeIdentity, Rate: 1_000_000, Period: time.Second},
		{Scope: ratelimit.ScopeAPIKey, Rate: 1_000_000, Period: time.Second},
	})
}

func benchOverhead(b *testing.B, limits []ratelimit.Limit) {
	lim, err := ratelimit.New(ratelimit.Options{Redis: redisClient(b), Defaults: limits})
	require.NoError(b, err)
	on, off := serve(b, lim), serve(b, nil)
	c := newCaller("user")
	ctx := c.ctx()
	req := &adminv1.GetHealthRequest{}
	// Warm both connections and Redis's script cache.
	for range 100 {
		_, err := on.GetHealth(ctx, req)
		require.NoError(b, err)
		_, err = off.GetHealth(ctx, req)
		require.NoError(b, err)
	}
	latOn := make([]time.Duration, 0, b.N)
	latOff := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		first, second, l1, l2 := on, off, &latOn, &latOff
		if i%2 == 1 {
			first, second, l1, l2 = off, on, &latOff, &latOn
		}
		start := time.Now()
		_, err := first.GetHealth(ctx, req)
		mid := time.Now()
		_, err2 := second.GetHealth(ctx, req)
		end := time.Now()
		if err != nil || err2 != nil {
			b.Fatal(err, err2)
		}
		*l1 = append(*l1, mid.Sub(start))
		*l2 = append(*l2, end.Sub(mid))
	}
	b.StopTimer()
	pOn50, pOn99 := percentiles(latOn)
	pOff50, pOff99 := percentiles(latOff)
	b.ReportMetric(float64(pOn50.Microseconds()), "on-p50-µs")
	b.ReportMetric(float64(pOn99.Microseconds()), "on-p99-µs")
	b.ReportMetric(float64(pOff50.Microseconds()), "off-p50-µs")
	b.ReportMetric(float64(pOff99.Microseconds()), "off-p99-µs")
	b.ReportMetric(float64((pOn50 - pOff50).Microseconds()), "overhead-p50-µs")
	b.ReportMetric(float64((pOn99 - pOff99).Microseconds()), "overhead-p99-µs")
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}
