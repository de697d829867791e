package usage_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/usage"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// BenchmarkBusIngest publishes domain events to JetStream (10 tenants, 100
// identities each), then starts the usage module and measures how fast its consumer
// turns them into raw usage events and rollups, until the last one is in the daily
// rollup. Reported as events/s.
//
//	go test ./services/usage -run '^$' -bench BusIngest -benchtime 1x
func BenchmarkBusIngest(b *testing.B) {
	const total = 100_000
	ctx := context.Background()
	ns, err := bus.StartEmbedded(b.TempDir(), -1)
	require.NoError(b, err)
	b.Cleanup(ns.Shutdown)
	bs, err := bus.Connect(ctx, ns.URL(), "usage-bench", bus.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(b, err)
	b.Cleanup(bs.Close)
	_, err = bs.EnsureStream(ctx)
	require.NoError(b, err)
	db := pgtest.New(b, usage.Migrations())
	tenants := make([]string, 10)
	owners := make([]string, 100)
	for i := range tenants {
		tenants[i] = uuid.NewString()
	}
	for i := range owners {
		owners[i] = uuid.NewString()
	}
	for i := range total {
		ev, err := bus.NewEvent(tenants[i%10], "memory.created", "manushya/memory", uuid.NewString(),
			map[string]string{"owner_id": owners[(i/10)%100]})
		require.NoError(b, err)
		payload, err := ev.MarshalCloudEvent()
		require.NoError(b, err)
		if _, err := bs.JS.PublishAsync(ev.NATSSubject(), payload); err != nil {
			b.Fatal(err)
		}
	}
	<-bs.JS.PublishAsyncComplete()

	b.ResetTimer()
	for range b.N {
		mod, err := usage.New(usage.Config{}, usage.Deps{Pool: db.Pool, Bus: bs, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(b, err)
		start := time.Now()
		require.NoError(b, mod.Start(ctx))
		conn, err := pgx.Connect(ctx, db.AdminURL)
		require.NoError(b, err)
		for {
			var n int64
			require.NoError(b, conn.QueryRow(ctx, "SELECT coalesce(sum(event_count), 0)::bigint FROM usage.rollup_daily").Scan(&n))
			if n >= total {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.ReportMetric(total/elapsed.Seconds(), "events/s")
		_ = conn.Close(ctx)
		require.NoError(b, mod.Stop(ctx))
	}
}

// BenchmarkSummary seeds the daily rollups of one tenant directly, standing for
// 10M raw events over 60 days (event_count per row = 10M / rows), in two shapes:
// 200 identities (72k daily rows) and 2000 identities (720k rows), 6 types, and
// derives the summary's rollups from them as AggregateUsage does. It measures
// GetUsageSummary with days=30 (the 30 days and the 30 before) through gRPC with the
// full interceptor chain, uncached and with the default 10s cache, reporting the
// first call after loading and p50/p95 of the rest.
//
//	go test ./services/usage -run '^$' -bench Summary -benchtime 20x
func BenchmarkSummary(b *testing.B) {
	b.Run("uncached-200-identities", func(b *testing.B) { benchSummary(b, -1, 200) })
	b.Run("uncached-2000-identities", func(b *testing.B) { benchSummary(b, -1, 2000) })
	b.Run("cached-2000-identities", func(b *testing.B) { benchSummary(b, 10*time.Second, 2000) })
}

func benchSummary(b *testing.B, ttl time.Duration, identities int) {
	bundle := setupConfig(b, usage.Config{SummaryCacheTTL: ttl}, nil)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, bundle.db.AdminURL)
	require.NoError(b, err)
	defer func() { _ = conn.Close(ctx) }()
	perRow := 10_000_000 / (60 * 6 * identities)
	_, err = conn.Exec(ctx, `INSERT INTO usage.rollup_daily (tenant_id, day, type, identity_id, quantity, event_count)
SELECT $1::uuid, current_date - d, 'memory.' || t, md5(i::text)::uuid, $3 + (i % 50), $3
FROM generate_series(0, 59) d, unnest(ARRAY['write','search','read','delete','update','list']) t, generate_series(1, $2) i`,
		bundle.admin.tenant, identities, perRow)
	require.NoError(b, err)
	// The summary's own rollups, derived from the daily ones as AggregateUsage does.
	tenant := uuid.MustParse(bundle.admin.tenant)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	require.NoError(b, store.New(bundle.db.Pool).InTenant(ctx, tenant, func(tx *store.Tx) error {
		return tx.Rederive(ctx, tenant, today.AddDate(0, 0, -59), today.AddDate(0, 0, 1), nil)
	}))
	_, err = conn.Exec(ctx, "VACUUM ANALYZE usage.rollup_daily, usage.rollup_type_daily, usage.rollup_span, usage.identity_activity")
	require.NoError(b, err)
	days := int32(30)
	req := &usagev1.GetUsageSummaryRequest{Days: &days}
	call := bundle.admin.ctx()
	// The first call after loading: plans not cached, connection new.
	start := time.Now()
	resp, err := bundle.usage.GetUsageSummary(call, req)
	first := time.Since(start)
	require.NoError(b, err)
	require.Len(b, resp.GetTypes(), 6)
	require.EqualValues(b, identities, resp.GetActiveIdentityCount())
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := bundle.usage.GetUsageSummary(call, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
	b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 95).Microseconds())/1000, "p95-ms")
}

func percentile(d []time.Duration, p int) time.Duration {
	slices.Sort(d)
	return d[len(d)*p/100]
}
