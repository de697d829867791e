package outbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
)

func TestCommittedEventPublishedOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	// No polling worth speaking of: only the commit's notification can wake the relay.
	reg := prometheus.NewRegistry()
	r := tb.startRelay(t, outbox.WithPollInterval(time.Hour), outbox.WithRegisterer(reg))

	events := tb.newEvents(t, 3)
	tb.writeNotes(t, events, true)
	tb.waitDrained(t, r, 3)
	require.Eventually(t, func() bool { return r.Stats().Published == 3 }, 10*time.Second, time.Millisecond)
	metrics, err := reg.Gather()
	require.NoError(t, err)
	values := map[string]float64{}
	for _, mf := range metrics {
		m := mf.GetMetric()[0]
		require.Equal(t, schema, m.GetLabel()[0].GetValue())
		values[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	require.Equal(t, map[string]float64{
		"manushya_outbox_published_total":        3,
		"manushya_outbox_publish_failures_total": 0,
		"manushya_outbox_backlog":                0,
	}, values)

	got := tb.streamEvents(t)
	requireExactlyOnce(t, events, got)
	// One relay keeps commit order.
	for i := range events {
		require.Equal(t, events[i].ID, got[i].ID)
	}
	require.Zero(t, r.Stats().Duplicates)
}

func TestRolledBackEventNotPublished(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	r := tb.startRelay(t)

	rolledBack := tb.newEvents(t, 5)
	tb.writeNotes(t, rolledBack, false)
	// A later committed event is published only after everything before it,
	// so once it is on the stream the rolled-back ones would have been too.
	marker := tb.newEvents(t, 1)
	tb.writeNotes(t, marker, true)
	tb.waitDrained(t, r, 1)

	requireExactlyOnce(t, marker, tb.streamEvents(t))
}

func TestEventsWrittenWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	r := tb.startRelay(t)

	before := tb.newEvents(t, 10)
	tb.writeNotes(t, before, true)
	tb.waitDrained(t, r, uint64(len(before)))

	// A writer keeps committing across the outage, so some batches are in
	// flight when the server goes away.
	ctx, stopWriter := context.WithCancel(t.Context())
	var (
		mu      sync.Mutex
		written = append([]bus.Event(nil), before...)
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		for ctx.Err() == nil {
			events := tb.newEvents(t, 20)
			tb.writeNotes(t, events, true)
			mu.Lock()
			written = append(written, events...)
			mu.Unlock()
		}
	})

	tb.nats.Shutdown()
	during := tb.newEvents(t, 200)
	for i := 0; i < len(during); i += 50 {
		tb.writeNotes(t, during[i:i+50], true)
	}
	// The relay has noticed the outage: a pass has failed.
	require.Eventually(t, func() bool { return r.Stats().Failures > 0 }, 30*time.Second, 5*time.Millisecond)
	require.False(t, r.Stats().FailingSince.IsZero())
	backlog, err := r.Backlog(t.Context())
	require.NoError(t, err)
	require.GreaterOrEqual(t, backlog, int64(len(during)))

	tb.nats, err = bus.StartEmbedded(tb.storeDir, tb.port)
	require.NoError(t, err)
	stopWriter()
	wg.Wait()
	written = append(written, during...)

	tb.waitDrained(t, r, uint64(len(written)))
	requireExactlyOnce(t, written, tb.streamEvents(t))
	require.Eventually(t, func() bool { return r.Stats().FailingSince.IsZero() }, 30*time.Second, 5*time.Millisecond)
}

func TestTwoRelaysPublishEachEventOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	// Small batches so both relays get work while the writes go on.
	r1 := tb.startRelay(t, outbox.WithBatchSize(50))
	r2 := outbox.NewRelay(tb.db.Pool, tb.connect(t).JS, schema, quietLogger(), outbox.WithBatchSize(50))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r2.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	var written []bus.Event
	for range 20 {
		events := tb.newEvents(t, 100)
		tb.writeNotes(t, events, true)
		written = append(written, events...)
	}
	tb.waitDrained(t, r1, uint64(len(written)))
	requireExactlyOnce(t, written, tb.streamEvents(t))
	// The counters move just after the commit that empties the outbox.
	require.Eventually(t, func() bool {
		return r1.Stats().Published+r2.Stats().Published == uint64(len(written))
	}, 10*time.Second, time.Millisecond)
	require.Zero(t, r1.Stats().Duplicates+r2.Stats().Duplicates)
}

func TestRelayListensAgainAfterConnectionLoss(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	r := tb.startRelay(t, outbox.WithPollInterval(time.Hour))

	first := tb.newEvents(t, 1)
	tb.writeNotes(t, first, true)
	tb.waitDrained(t, r, 1)

	// Kill the relay's LISTEN session from the server side.
	admin, err := pgx.Connect(t.Context(), tb.db.AdminURL)
	require.NoError(t, err)
	defer func() { require.NoError(t, admin.Close(context.Background())) }()
	// The first event may have gone out through the relay's first pass
	// before its listener was up, so wait for the LISTEN session to exist.
	require.Eventually(t, func() bool {
		var killed int
		err := admin.QueryRow(t.Context(), `
SELECT count(pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE datname = current_database() AND query = 'LISTEN `+outbox.Channel+`'`).Scan(&killed)
		return err == nil && killed == 1
	}, 30*time.Second, 5*time.Millisecond)

	// With polling off, only a re-established LISTEN (which also catches up
	// on what it missed) publishes this.
	second := tb.newEvents(t, 1)
	tb.writeNotes(t, second, true)
	tb.waitDrained(t, r, 2)
	requireExactlyOnce(t, append(first, second...), tb.streamEvents(t))
}

func TestWriteRejectsBadInput(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	events := tb.newEvents(t, 1)

	for _, bad := range []string{"", "Relaytest", "relaytest.outbox", `relaytest"; DROP TABLE x; --`, "1abc", "a b"} {
		err := postgres.InTx(t.Context(), tb.db.Pool, func(tx pgx.Tx) error {
			return outbox.Write(t.Context(), tx, bad, events...)
		})
		require.ErrorIs(t, err, outbox.ErrInvalidSchema, bad)
		require.ErrorIs(t, outbox.NewRelay(tb.db.Pool, tb.bus.JS, bad, nil).Run(t.Context()), outbox.ErrInvalidSchema)
	}

	invalid := events[0]
	invalid.Tenant = "*"
	err := postgres.InTx(t.Context(), tb.db.Pool, func(tx pgx.Tx) error {
		return outbox.Write(t.Context(), tx, schema, invalid)
	})
	require.ErrorIs(t, err, bus.ErrInvalidEvent)

	huge, err := bus.NewEvent(tb.tenant, "note.created", "manushya/relaytest", "r", map[string]string{
		"body": string(make([]byte, outbox.MaxPayload)),
	})
	require.NoError(t, err)
	err = postgres.InTx(t.Context(), tb.db.Pool, func(tx pgx.Tx) error {
		return outbox.Write(t.Context(), tx, schema, huge)
	})
	require.ErrorIs(t, err, outbox.ErrEventTooLarge)

	r := outbox.NewRelay(tb.db.Pool, tb.bus.JS, schema, nil)
	backlog, err := r.Backlog(t.Context())
	require.NoError(t, err)
	require.Zero(t, backlog)
}

func TestRepublishAfterLostAckNotDoubled(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	events := tb.newEvents(t, 3)
	// The first event already reached the stream in an earlier pass whose
	// ack was lost, so its row was rolled back and is still in the outbox.
	payload, err := events[0].MarshalCloudEvent()
	require.NoError(t, err)
	_, err = tb.bus.JS.Publish(t.Context(), events[0].NATSSubject(), payload, jetstream.WithMsgID(events[0].ID))
	require.NoError(t, err)
	tb.writeNotes(t, events, true)

	r := tb.startRelay(t)
	tb.waitDrained(t, r, 3)
	requireExactlyOnce(t, events, tb.streamEvents(t))
	require.Eventually(t, func() bool { return r.Stats().Published == 3 }, 10*time.Second, time.Millisecond)
	require.Equal(t, uint64(1), r.Stats().Duplicates)
}
