package memory

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// Purging an identity deletes its memories and their versions over several
// batches, and nobody else's; running it again deletes nothing more. No erasure
// progress row or report is written: a purge is no erasure.
func TestPurgeIdentityMemories(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{noWorkers: true})
	n := erasureBatch + 3
	count := func(sql string, args ...any) int64 {
		t.Helper()
		var c int64
		require.NoError(t, b.admin.QueryRow(ctx, sql, args...).Scan(&c))
		return c
	}
	_, err := b.admin.Exec(ctx, `INSERT INTO memory.memories (id, tenant_id, identity_id, text)
		SELECT gen_random_uuid(), $1, $2, 'seeded ' || g FROM generate_series(1, $3) g`, b.tenantA, b.user1, n)
	require.NoError(t, err)
	_, err = b.admin.Exec(ctx, `INSERT INTO memory.memory_versions (memory_id, version, tenant_id, text, type, metadata)
		SELECT id, 1, tenant_id, text, type, metadata FROM memory.memories WHERE identity_id = $1`, b.user1)
	require.NoError(t, err)
	b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "made through the API"})
	kept := b.create(t, "user2", &memoryv1.CreateMemoryRequest{Text: "someone else's"})
	b.create(t, "admin-b", &memoryv1.CreateMemoryRequest{Text: "another tenant's"})

	deleted, err := b.mod.svc.PurgeIdentityMemories(ctx, b.tenantA, b.user1)
	require.NoError(t, err)
	require.EqualValues(t, n+1, deleted)
	require.Zero(t, count(`SELECT count(*) FROM memory.memories WHERE identity_id = $1`, b.user1))
	require.Zero(t, count(`SELECT count(*) FROM memory.memory_versions v WHERE NOT EXISTS (SELECT 1 FROM memory.memories m WHERE m.id = v.memory_id)`))

	deleted, err = b.mod.svc.PurgeIdentityMemories(ctx, b.tenantA, b.user1)
	require.NoError(t, err, "a redelivery")
	require.Zero(t, deleted)

	_, err = b.client.GetMemory(as("user2"), &memoryv1.GetMemoryRequest{Id: kept.GetId()})
	require.NoError(t, err, "another identity keeps its memories")
	require.EqualValues(t, 1, count(`SELECT count(*) FROM memory.memories WHERE tenant_id = $1`, b.tenantB))
	require.Zero(t, count(`SELECT count(*) FROM memory.erasures`))
	require.Zero(t, count(`SELECT count(*) FROM memory.outbox WHERE subject LIKE '%.erasure.progress'`))
}

// identity.purged on the bus reaches the memory service's consumer, which deletes
// that identity's memories; the same event delivered twice is harmless.
func TestIdentityPurgedEventDeletesMemories(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	gone := b.create(t, "user1", &memoryv1.CreateMemoryRequest{Text: "mine"})
	kept := b.create(t, "user2", &memoryv1.CreateMemoryRequest{Text: "someone else's"})

	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	publish := func() {
		t.Helper()
		ev, err := bus.NewEvent(b.tenantA.String(), erasure.EventIdentityPurged, "identity", b.user1.String(),
			erasure.Purged{IdentityID: b.user1.String()})
		require.NoError(t, err)
		raw, err := ev.MarshalCloudEvent()
		require.NoError(t, err)
		_, err = js.Publish(ctx, ev.NATSSubject(), raw)
		require.NoError(t, err)
	}
	mine := func() int64 {
		var c int64
		require.NoError(t, b.admin.QueryRow(ctx, `SELECT count(*) FROM memory.memories WHERE identity_id = $1`, b.user1).Scan(&c))
		return c
	}

	publish()
	require.Eventually(t, func() bool { return mine() == 0 }, 20*time.Second, 50*time.Millisecond)
	_, err = b.client.GetMemory(as("user1"), &memoryv1.GetMemoryRequest{Id: gone.GetId()})
	requireCode(t, err, codes.NotFound)

	// A redelivery finds nothing to delete and leaves the others alone.
	publish()
	b.create(t, "user2", &memoryv1.CreateMemoryRequest{Text: "written after"})
	require.Eventually(t, func() bool {
		info, err := js.Consumer(ctx, b.mod.bus.StreamName(), purgeConsumerName)
		if err != nil {
			return false
		}
		ci, err := info.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	}, 20*time.Second, 50*time.Millisecond)
	_, err = b.client.GetMemory(as("user2"), &memoryv1.GetMemoryRequest{Id: kept.GetId()})
	require.NoError(t, err)
}
