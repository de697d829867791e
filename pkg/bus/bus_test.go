package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
)

func startBus(t *testing.T) (*bus.Embedded, *bus.Bus) {
	t.Helper()
	srv, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	b, err := bus.Connect(t.Context(), srv.URL(), t.Name())
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return srv, b
}

func TestStreamAndConsumer(t *testing.T) {
	t.Parallel()
	_, b := startBus(t)
	ctx := t.Context()

	st, err := b.EnsureStream(ctx)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, bus.StreamName, info.Config.Name)
	require.Equal(t, []string{"manushya.>"}, info.Config.Subjects)
	require.Equal(t, jetstream.FileStorage, info.Config.Storage)
	require.Equal(t, 2*time.Minute, info.Config.Duplicates)
	require.Equal(t, 7*24*time.Hour, info.Config.MaxAge)
	// Every process calls it at start.
	_, err = b.EnsureStream(ctx)
	require.NoError(t, err)

	created, err := bus.NewEvent(tenant, "identity.created", "manushya/identity", "i1", map[string]string{"k": "v"})
	require.NoError(t, err)
	deleted, err := bus.NewEvent(tenant, "memory.deleted", "manushya/memory", "m1", nil)
	require.NoError(t, err)
	for _, e := range []bus.Event{created, deleted} {
		payload, err := e.MarshalCloudEvent()
		require.NoError(t, err)
		_, err = b.JS.Publish(ctx, e.NATSSubject(), payload, jetstream.WithMsgID(e.ID))
		require.NoError(t, err)
	}

	cons, err := b.Consumer(ctx, "identity-watcher", []string{bus.TypeFilter("identity.>")})
	require.NoError(t, err)
	ci, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.AckExplicitPolicy, ci.Config.AckPolicy)
	require.Equal(t, bus.DefaultMaxDeliver, ci.Config.MaxDeliver)
	require.Equal(t, bus.DefaultBackOff(), ci.Config.BackOff)

	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	got, err := bus.ParseCloudEvent(msg.Data())
	require.NoError(t, err)
	require.Equal(t, created, got)
	require.NoError(t, msg.Ack())

	// The memory event is filtered out, so nothing else is pending.
	ci, err = cons.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, ci.NumPending)

	_, err = b.Consumer(ctx, "bad.name", []string{bus.TypeFilter("identity.>")})
	require.Error(t, err)
}

func TestEmbeddedRestartKeepsStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := bus.StartEmbedded(dir, -1)
	require.NoError(t, err)
	port := srv.Port()
	require.NotZero(t, port)

	b, err := bus.Connect(t.Context(), srv.URL(), t.Name(),
		bus.WithNATSOptions(nats.ReconnectWait(50*time.Millisecond)))
	require.NoError(t, err)
	t.Cleanup(b.Close)
	st, err := b.EnsureStream(t.Context())
	require.NoError(t, err)
	e, err := bus.NewEvent(tenant, "policy.updated", "manushya/policy", "p1", nil)
	require.NoError(t, err)
	payload, err := e.MarshalCloudEvent()
	require.NoError(t, err)
	_, err = b.JS.Publish(t.Context(), e.NATSSubject(), payload, jetstream.WithMsgID(e.ID))
	require.NoError(t, err)

	srv.Shutdown()
	srv, err = bus.StartEmbedded(dir, port)
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)

	// The client reconnects by itself; the message and the dedup state survive.
	ack, err := b.JS.Publish(t.Context(), e.NATSSubject(), payload, jetstream.WithMsgID(e.ID),
		jetstream.WithRetryAttempts(100), jetstream.WithRetryWait(50*time.Millisecond))
	require.NoError(t, err)
	require.True(t, ack.Duplicate)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs)
}

func TestConnectGivesUpWithContext(t *testing.T) {
	t.Parallel()
	srv, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	url := srv.URL()
	srv.Shutdown()

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = bus.Connect(ctx, url, t.Name())
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestAuditStream(t *testing.T) {
	t.Parallel()
	_, b := startBus(t)
	ctx := t.Context()
	st, err := b.EnsureAuditStream(ctx)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, bus.AuditStreamName, info.Config.Name)
	require.Equal(t, []string{"audit.>"}, info.Config.Subjects)
	require.Equal(t, jetstream.FileStorage, info.Config.Storage)
	require.Equal(t, "audit."+tenant, b.AuditSubjectOf(tenant))
	// The events stream and the audit stream do not overlap.
	_, err = b.EnsureStream(ctx)
	require.NoError(t, err)

	_, err = b.JS.Publish(ctx, b.AuditSubjectOf(tenant), []byte(`{}`), jetstream.WithMsgID("r1"))
	require.NoError(t, err)
	// Re-sent after a lost ack: stored once.
	_, err = b.JS.Publish(ctx, b.AuditSubjectOf(tenant), []byte(`{}`), jetstream.WithMsgID("r1"))
	require.NoError(t, err)
	cons, err := b.AuditConsumer(ctx, "audit-reader")
	require.NoError(t, err)
	batch, err := cons.FetchNoWait(10)
	require.NoError(t, err)
	n := 0
	for m := range batch.Messages() {
		require.Equal(t, "audit."+tenant, m.Subject())
		n++
	}
	require.Equal(t, 1, n)
}
