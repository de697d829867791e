package outbox_test

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
)

const schema = "relaytest"

//go:embed testdata/migrations/*.sql
var migrationFiles embed.FS

func migrations(t testing.TB) postgres.Migrations {
	sub, err := fs.Sub(migrationFiles, "testdata/migrations")
	require.NoError(t, err)
	return postgres.Migrations{Schema: schema, FS: sub}
}

// testBundle is one test's world: its own database, NATS server and stream.
type testBundle struct {
	db       *pgtest.DB
	nats     *bus.Embedded
	storeDir string
	port     int
	bus      *bus.Bus
	stream   jetstream.Stream
	tenant   string
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	tb := &testBundle{
		db:       pgtest.New(t, migrations(t)),
		storeDir: t.TempDir(),
		tenant:   uuid.Must(uuid.NewV7()).String(),
	}
	var err error
	tb.nats, err = bus.StartEmbedded(tb.storeDir, -1)
	require.NoError(t, err)
	tb.port = tb.nats.Port()
	t.Cleanup(func() { tb.nats.Shutdown() })

	tb.bus = tb.connect(t)
	tb.stream, err = tb.bus.EnsureStream(t.Context())
	require.NoError(t, err)
	return tb
}

// connect opens a client that reconnects quickly, so restart tests stay fast.
func (tb *testBundle) connect(t testing.TB) *bus.Bus {
	t.Helper()
	b, err := bus.Connect(t.Context(), tb.nats.URL(), t.Name(),
		bus.WithLogger(quietLogger()),
		bus.WithNATSOptions(nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0)))
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

func quietLogger() *slog.Logger {
	level := slog.LevelError
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startRelay runs a relay until the test ends.
func (tb *testBundle) startRelay(t testing.TB, opts ...outbox.Option) *outbox.Relay {
	t.Helper()
	opts = append([]outbox.Option{outbox.WithMaxBackoff(100 * time.Millisecond)}, opts...)
	r := outbox.NewRelay(tb.db.Pool, tb.bus.JS, schema, quietLogger(), opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return r
}

// newEvents builds n events of the bundle's tenant.
func (tb *testBundle) newEvents(t testing.TB, n int) []bus.Event {
	t.Helper()
	events := make([]bus.Event, n)
	for i := range events {
		var err error
		events[i], err = bus.NewEvent(tb.tenant, "note.created", "manushya/relaytest",
			uuid.Must(uuid.NewV7()).String(), map[string]int{"i": i})
		require.NoError(t, err)
	}
	return events
}

// writeNotes stores one note per event and the events themselves in one
// tenant transaction, committed when commit is true and rolled back otherwise.
func (tb *testBundle) writeNotes(t testing.TB, events []bus.Event, commit bool) {
	t.Helper()
	errRollback := context.Canceled // any error rolls back
	err := postgres.InTenantTx(t.Context(), tb.db.Pool, tb.tenant, func(tx pgx.Tx) error {
		for _, e := range events {
			if _, err := tx.Exec(t.Context(), `INSERT INTO relaytest.notes (id, tenant_id, body) VALUES ($1, $2, 'x')`,
				e.Subject, e.Tenant); err != nil {
				return err
			}
		}
		if err := outbox.Write(t.Context(), tx, schema, events...); err != nil {
			return err
		}
		if !commit {
			return errRollback
		}
		return nil
	})
	if commit {
		require.NoError(t, err)
	} else {
		require.ErrorIs(t, err, errRollback)
	}
}

// waitDrained waits until the outbox is empty and the stream holds at least
// want messages. It bounds the wait only to fail a broken test; no timing is
// asserted.
func (tb *testBundle) waitDrained(t testing.TB, r *outbox.Relay, want uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		n, err := r.Backlog(t.Context())
		if err != nil || n != 0 {
			return false
		}
		info, err := tb.stream.Info(t.Context())
		if err != nil {
			return false // NATS may still be coming back
		}
		return info.State.Msgs >= want
	}, 30*time.Second, 10*time.Millisecond)
}

// streamEvents reads every message of the stream, in order.
func (tb *testBundle) streamEvents(t testing.TB) []bus.Event {
	t.Helper()
	ctx := t.Context()
	info, err := tb.stream.Info(ctx)
	require.NoError(t, err)
	total := int(info.State.Msgs)
	cons, err := tb.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	events := make([]bus.Event, 0, total)
	for len(events) < total {
		batch, err := cons.Fetch(min(total-len(events), 1000), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		for msg := range batch.Messages() {
			e, err := bus.ParseCloudEvent(msg.Data())
			require.NoError(t, err)
			require.Equal(t, e.NATSSubject(), msg.Subject())
			require.Equal(t, e.ID, msg.Headers().Get(jetstream.MsgIDHeader))
			events = append(events, e)
		}
		require.NoError(t, batch.Error())
	}
	return events
}

// requireExactlyOnce checks the stream holds every written event once and nothing else.
func requireExactlyOnce(t testing.TB, written []bus.Event, got []bus.Event) {
	t.Helper()
	want := make(map[string]bus.Event, len(written))
	for _, e := range written {
		want[e.ID] = e
	}
	seen := make(map[string]bool, len(got))
	for _, e := range got {
		require.False(t, seen[e.ID], "event %s published twice", e.ID)
		seen[e.ID] = true
		w, ok := want[e.ID]
		require.True(t, ok, "unexpected event %s on the stream", e.ID)
		require.Equal(t, w, e)
	}
	require.Len(t, seen, len(want), "distinct events on the stream")
}
