package identity_test

import (
	"context"
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
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "logins/s")
	b.ReportMetric(float64(idleP99.Microseconds())/1000, "idle_getidentity_p99_ms")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "getidentity_p99_ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "getidentity_p50_ms")
	}
}
