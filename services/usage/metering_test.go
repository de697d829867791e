package usage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/metering"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/usage"
)

func embeddedBus(t *testing.T) *bus.Bus {
	t.Helper()
	ns, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	bs, err := bus.Connect(context.Background(), ns.URL(), "usage-test")
	require.NoError(t, err)
	t.Cleanup(bs.Close)
	_, err = bs.EnsureStream(context.Background())
	require.NoError(t, err)
	return bs
}

// Every served call becomes api.request usage: N calls through a server with the
// metering interceptor show as N api.request units in the summary, per route, and
// a flush sent twice (a lost ack) counts once.
func TestServedRequestsBecomeAPIRequestUsage(t *testing.T) {
	t.Parallel()
	bs := embeddedBus(t)
	meter := metering.New(metering.Options{Interval: time.Hour})
	b := setupObserved(t, usage.Config{SummaryCacheTTL: -1}, func(*pgtest.DB) usage.Deps { return usage.Deps{Bus: bs} },
		[]grpc.UnaryServerInterceptor{meter.UnaryServerInterceptor()})
	ctx := context.Background()
	require.NoError(t, b.mod.Start(ctx))
	t.Cleanup(func() { _ = b.mod.Stop(context.Background()) })

	const n = 25
	for range n {
		_, err := b.usage.ListDailyUsage(b.admin.ctx(), &usagev1.ListDailyUsageRequest{})
		require.NoError(t, err)
	}
	_, err := b.monitor.GetHealth(b.admin.ctx(), &adminv1.GetHealthRequest{})
	require.NoError(t, err)
	// Another tenant's calls are its own usage.
	_, err = b.usage.ListDailyUsage(b.adminB.ctx(), &usagev1.ListDailyUsageRequest{})
	require.NoError(t, err)
	require.NoError(t, meter.Flush(ctx, bs.JS))

	var sum *usagev1.GetUsageSummaryResponse
	require.Eventually(t, func() bool {
		sum, err = b.usage.GetUsageSummary(b.admin.ctx(), &usagev1.GetUsageSummaryRequest{Type: metering.UsageType})
		return err == nil && len(sum.GetTypes()) == 1 && sum.GetTypes()[0].GetQuantity() >= n+1
	}, 15*time.Second, 50*time.Millisecond)
	api := sum.GetTypes()[0]
	require.EqualValues(t, n+1, api.GetQuantity(), "the summary calls themselves are counted by later flushes")
	require.Equal(t, b.admin.identity, api.GetTopIdentities()[0].GetIdentityId())

	// By route: the raw events carry the method.
	evs, err := b.usage.ListUsageEvents(b.admin.ctx(), &usagev1.ListUsageEventsRequest{Type: metering.UsageType})
	require.NoError(t, err)
	routes := map[string]int64{}
	for _, e := range evs.GetEvents() {
		routes[e.GetProperties().GetFields()["route"].GetStringValue()] += e.GetQuantity()
	}
	require.Equal(t, map[string]int64{
		"/manushya.usage.v1.UsageService/ListDailyUsage": n,
		"/manushya.admin.v1.MonitoringService/GetHealth": 1,
	}, routes)

	other, err := b.usage.GetUsageSummary(b.adminB.ctx(), &usagev1.GetUsageSummaryRequest{Type: metering.UsageType})
	require.NoError(t, err)
	require.EqualValues(t, 1, other.GetTypes()[0].GetQuantity())
}

// While the usage consumer is stopped its lag grows with every event published, in
// ListConsumers and in the gauges /metrics exports; once it runs again it drains.
func TestConsumerLagGrowsWhileStopped(t *testing.T) {
	t.Parallel()
	bs := embeddedBus(t)
	reg := prometheus.NewRegistry()
	b := setup(t, func(*pgtest.DB) usage.Deps { return usage.Deps{Bus: bs, Registerer: reg} })
	ctx := context.Background()
	publish := func(k int) {
		for range k {
			ev, err := bus.NewEvent(b.admin.tenant, "memory.created", "manushya/memory", uuid.NewString(),
				map[string]string{"owner_id": b.admin.identity})
			require.NoError(t, err)
			payload, err := ev.MarshalCloudEvent()
			require.NoError(t, err)
			_, err = bs.JS.Publish(ctx, ev.NATSSubject(), payload)
			require.NoError(t, err)
		}
	}
	lag := func() (api, gauge int64) {
		cons, err := b.monitor.ListConsumers(b.admin.ctx(), &adminv1.ListConsumersRequest{})
		require.NoError(t, err)
		for _, c := range cons.GetConsumers() {
			if c.GetConsumer() == usage.ConsumerName {
				api = c.GetPendingCount() + c.GetAckPendingCount()
			}
		}
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			switch mf.GetName() {
			case "manushya_jetstream_consumer_pending_messages", "manushya_jetstream_consumer_ack_pending_messages":
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "consumer" && l.GetValue() == usage.ConsumerName {
							gauge += int64(m.GetGauge().GetValue())
						}
					}
				}
			}
		}
		return api, gauge
	}

	require.NoError(t, b.mod.Start(ctx))
	publish(2)
	require.Eventually(t, func() bool { a, g := lag(); return a == 0 && g == 0 }, 15*time.Second, 50*time.Millisecond)
	require.NoError(t, b.mod.Stop(ctx))

	// The server counts a consumer's pending messages a moment after the publish
	// is acknowledged, so the counts are awaited, never read once.
	publish(3)
	var a1 int64
	require.Eventually(t, func() bool { a, g := lag(); a1 = a; return a >= 3 && a == g }, 5*time.Second, 20*time.Millisecond,
		"the gauge shows what the API shows")
	publish(4)
	require.Eventually(t, func() bool { a, g := lag(); return a == a1+4 && g == a }, 5*time.Second, 20*time.Millisecond,
		"lag grows with every event while stopped")

	// Started again (a new module on the same durable consumer), it catches up.
	mod, err := usage.New(usage.Config{}, usage.Deps{Pool: b.db.Pool, Bus: bs})
	require.NoError(t, err)
	require.NoError(t, mod.Start(ctx))
	t.Cleanup(func() { _ = mod.Stop(context.Background()) })
	require.Eventually(t, func() bool { a, g := lag(); return a == 0 && g == 0 }, 15*time.Second, 50*time.Millisecond)
}
