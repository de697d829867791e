package identity_test

import (
	"context"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// benchSetup serves the identity service on real PostgreSQL with one user.
func benchSetup(b *testing.B) *tokBundle {
	b.Helper()
	bundle := tokSetup(b, tokOptions{})
	bundle.user(b, "bench-user", "user")
	return bundle
}

// BenchmarkRefreshThroughput refreshes 8 sessions concurrently through the gRPC
// server (real PostgreSQL), each following its own rotation chain; it reports
// refreshes per second.
func BenchmarkRefreshThroughput(b *testing.B) {
	bundle := benchSetup(b)
	const workers = 8
	chains := make([]string, workers)
	for i := range workers {
		chains[i] = bundle.login(b, "bench-user").GetRefreshToken()
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			tok := chains[w]
			for next.Add(1) <= int64(b.N) {
				resp, err := bundle.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: tok})
				if err != nil {
					b.Error(err)
					return
				}
				tok = resp.GetTokens().GetRefreshToken()
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "refreshes/s")
}

// schedStats is a reading of the runtime's scheduler and GC metrics.
type schedStats struct {
	wait     *metrics.Float64Histogram
	gcCycles float64
}

func schedSample() schedStats {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	return schedStats{
		wait:     &metrics.Float64Histogram{Counts: slices.Clone(h.Counts), Buckets: h.Buckets},
		gcCycles: float64(s[1].Value.Uint64()),
	}
}

// waitP99 is the 99th percentile of scheduling waits between before and s, in
// seconds (the upper bound of the bucket it falls in).
func (s schedStats) waitP99(before schedStats) float64 {
	var total uint64
	diff := make([]uint64, len(s.wait.Counts))
	for i := range diff {
		diff[i] = s.wait.Counts[i] - before.wait.Counts[i]
		total += diff[i]
	}
	var seen uint64
	for i, n := range diff {
		seen += n
		if seen*100 >= total*99 {
			return s.wait.Buckets[i+1]
		}
	}
	return 0
}

// BenchmarkLoginFlood runs argon2id logins from 8 clients while one client calls
// GetIdentity in a loop; it reports logins per second and GetIdentity's p99.
func BenchmarkLoginFlood(b *testing.B) {
	bundle := benchSetup(b)
	admin := as(bundle.adminA)
	list, err := bundle.ids.ListIdentities(admin, &identityv1.ListIdentitiesRequest{ExternalId: "bench-user"})
	if err != nil || len(list.GetIdentities()) != 1 {
		b.Fatal(err)
	}
	id := list.GetIdentities()[0].GetId()
	// The same probe without the flood first, as the baseline of this machine now.
	var idle []time.Duration
	for range 200 {
		t0 := time.Now()
		if _, err := bundle.ids.GetIdentity(admin, &identityv1.GetIdentityRequest{Id: id}); err != nil {
			b.Fatal(err)
		}
		idle = append(idle, time.Since(t0))
	}
	slices.Sort(idle)
	idleP99 := idle[len(idle)*99/100]
	const workers = 8
	var next atomic.Int64
	stop := make(chan struct{})
	var lat []time.Duration
	var probe sync.WaitGroup
	probe.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			if _, err := bundle.ids.GetIdentity(admin, &identityv1.GetIdentityRequest{Id: id}); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(2 * time.Millisecond)
		}
	})
	b.ResetTimer()
	before := schedSample()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				_, err := bundle.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "bench-user", Password: testPassword})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	probe.Wait()
	after := schedSample()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "logins/s")
	// How long goroutines waited for a P (Go's scheduler alone, not the kernel's
	// run queue): what a hashing worker holding a P costs everything else, apart
	// from how loaded the machine is.
	b.ReportMetric(after.waitP99(before)*1000, "sched_wait_p99_ms")
	b.ReportMetric(after.gcCycles-before.gcCycles, "gc_cycles")
	b.ReportMetric(float64(idleP99.Microseconds())/1000, "idle_getidentity_p99_ms")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "getidentity_p99_ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "getidentity_p50_ms")
	}
}
