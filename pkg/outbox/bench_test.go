package outbox_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
)

// BenchmarkRelayThroughput commits b.N events in transactions of txSize
// from two concurrent writers and measures, on a stream consumer, how fast
// they arrive (events/s, from the first commit to the last arrival) and each
// event's latency from its transaction's commit call to its arrival (p50,
// p99, max). One relay with the default batch size; the database, NATS and the
// benchmark share the machine.
//
// "max" commits as fast as PostgreSQL allows, so its latency includes
// queueing behind the relay; "paced5000" paces the commits at 5,000 events/s
// and shows the latency of a system that keeps up.
func BenchmarkRelayThroughput(b *testing.B) {
	b.Run("max", func(b *testing.B) { benchRelay(b, 0) })
	b.Run("paced5000", func(b *testing.B) { benchRelay(b, 5000) })
}

func benchRelay(b *testing.B, perSecond int) {
	const (
		txSize  = 100
		writers = 2
	)
	tb := setup(b)
	relay := tb.startRelay(b)
	ctx := b.Context()

	// Events are built up front so the clock measures only the pipeline.
	events := tb.newEvents(b, b.N)
	txs := slices.Collect(slices.Chunk(events, txSize))
	txOf := make(map[string]int, len(events))
	for i, tx := range txs {
		for _, e := range tx {
			txOf[e.ID] = i
		}
	}
	committedAt := make([]atomic.Int64, len(txs))

	// The consumer has its own connection, as a real subscriber would.
	sub := tb.connect(b)
	cons, err := sub.JS.OrderedConsumer(ctx, tb.stream.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	require.NoError(b, err)
	latencies := make([]time.Duration, 0, len(events))
	var lastArrival time.Time
	allIn := make(chan struct{})
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		now := time.Now()
		i, ok := txOf[msg.Headers().Get(jetstream.MsgIDHeader)]
		if !ok {
			return
		}
		latencies = append(latencies, now.Sub(time.Unix(0, committedAt[i].Load())))
		if len(latencies) == len(events) {
			lastArrival = now
			close(allIn)
		}
	}, jetstream.PullMaxMessages(1000))
	require.NoError(b, err)
	defer cc.Stop()

	next := atomic.Int64{}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(txs) {
					return
				}
				if perSecond > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * txSize * time.Second / time.Duration(perSecond))))
				}
				err := postgres.InTenantTx(ctx, tb.db.Pool, tb.tenant, func(tx pgx.Tx) error {
					if err := outbox.Write(ctx, tx, schema, txs[i]...); err != nil {
						return err
					}
					// InTenantTx commits right after this returns.
					committedAt[i].Store(time.Now().UnixNano())
					return nil
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-allIn:
	case <-time.After(time.Minute):
		b.Fatalf("only %d of %d events arrived", len(latencies), len(events))
	}
	b.StopTimer()

	elapsed := lastArrival.Sub(start)
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(events))/elapsed.Seconds(), "events/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	require.Eventually(b, func() bool { return relay.Stats().Published == uint64(len(events)) },
		10*time.Second, time.Millisecond)
}
