package memory

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// Erasing an identity deletes its memories and their versions over several batches,
// reports the totals once however often it runs, and leaves other identities and
// tenants alone; erasing a tenant empties it.
func TestEraseMemories(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{noWorkers: true})
	n := erasureBatch*2 + 7
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

	progress := func(erasureID uuid.UUID) []erasure.Progress {
		t.Helper()
		rows, err := b.admin.Query(ctx, `SELECT payload FROM memory.outbox WHERE subject LIKE '%.erasure.progress'`)
		require.NoError(t, err)
		defer rows.Close()
		var out []erasure.Progress
		for rows.Next() {
			var raw []byte
			require.NoError(t, rows.Scan(&raw))
			ev, err := bus.ParseCloudEvent(raw)
			require.NoError(t, err)
			var p erasure.Progress
			require.NoError(t, json.Unmarshal(ev.Data, &p))
			if p.ErasureID == erasureID.String() {
				out = append(out, p)
			}
		}
		return out
	}

	e1 := uuid.New()
	require.NoError(t, b.mod.svc.Erase(ctx, b.tenantA, e1, &b.user1))
	require.NoError(t, b.mod.svc.Erase(ctx, b.tenantA, e1, &b.user1), "a redelivery")
	require.Zero(t, count(`SELECT count(*) FROM memory.memories WHERE identity_id = $1`, b.user1))
	require.Zero(t, count(`SELECT count(*) FROM memory.memory_versions v WHERE NOT EXISTS (SELECT 1 FROM memory.memories m WHERE m.id = v.memory_id)`))
	reports := progress(e1)
	require.Len(t, reports, 1, "reported once")
	require.Equal(t, erasure.ServiceMemory, reports[0].Service)
	require.Equal(t, []erasure.Count{{Kind: "memories", Count: int64(n + 1)}, {Kind: "memory_versions", Count: int64(n + 1)}}, reports[0].Counts)
	_, err = b.client.GetMemory(as("user2"), &memoryv1.GetMemoryRequest{Id: kept.GetId()})
	require.NoError(t, err, "another identity keeps its memories")

	e2 := uuid.New()
	require.NoError(t, b.mod.svc.Erase(ctx, b.tenantB, e2, nil))
	require.Zero(t, count(`SELECT count(*) FROM memory.memories WHERE tenant_id = $1`, b.tenantB))
	require.EqualValues(t, 1, count(`SELECT count(*) FROM memory.memories WHERE tenant_id = $1`, b.tenantA))
	require.Len(t, progress(e2), 1)
}
