package usage_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/erasure"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
)

// Erasing an identity deletes its raw events and per-identity rollups, keeps the
// tenant's totals, reports once however often it runs, and keeps the identity's
// usage from coming back when more of it is delivered afterwards.
func TestEraseUsage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	tenant := uuid.MustParse(b.admin.tenant)
	erased, kept := uuid.NewString(), uuid.NewString()
	ingest := func(ids ...string) {
		t.Helper()
		var evs []*usagev1.UsageEvent
		for _, id := range ids {
			evs = append(evs, &usagev1.UsageEvent{Id: uuid.NewString(), Type: "memory.write", IdentityId: id})
		}
		_, err := b.usage.IngestUsageEvents(b.admin.ctx(), &usagev1.IngestUsageEventsRequest{Events: evs})
		require.NoError(t, err)
	}
	ingest(erased, erased, kept, "")
	conn, err := pgx.Connect(ctx, b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	count := func(sql string, args ...any) int64 {
		t.Helper()
		var n int64
		require.NoError(t, conn.QueryRow(ctx, sql, args...).Scan(&n))
		return n
	}
	typeTotal := count(`SELECT coalesce(sum(quantity), 0) FROM usage.rollup_type_daily WHERE tenant_id = $1`, tenant)
	require.EqualValues(t, 4, typeTotal)

	id := uuid.MustParse(erased)
	e1 := uuid.New()
	require.NoError(t, b.mod.Service().Erase(ctx, tenant, e1, &id))
	require.NoError(t, b.mod.Service().Erase(ctx, tenant, e1, &id), "a redelivery")
	for _, table := range []string{"events", "rollup_minute", "rollup_daily", "rollup_span", "identity_activity"} {
		require.Zero(t, count(`SELECT count(*) FROM usage.`+table+` WHERE identity_id = $1`, id), table)
	}
	require.Positive(t, count(`SELECT count(*) FROM usage.events WHERE identity_id = $1`, uuid.MustParse(kept)))
	require.Equal(t, typeTotal, count(`SELECT coalesce(sum(quantity), 0) FROM usage.rollup_type_daily WHERE tenant_id = $1`, tenant),
		"the tenant's totals carry no identity and stay")
	list, err := b.usage.ListUsageEvents(b.admin.ctx(), &usagev1.ListUsageEventsRequest{IdentityId: erased})
	require.NoError(t, err)
	require.Empty(t, list.GetEvents())

	// Usage of the erased identity delivered after the erasure is not stored.
	ingest(erased)
	require.Zero(t, count(`SELECT count(*) FROM usage.events WHERE identity_id = $1`, id))

	rows, err := conn.Query(ctx, `SELECT payload FROM usage.outbox WHERE subject LIKE '%.erasure.progress'`)
	require.NoError(t, err)
	var reports []erasure.Progress
	for rows.Next() {
		var raw []byte
		require.NoError(t, rows.Scan(&raw))
		ev, err := bus.ParseCloudEvent(raw)
		require.NoError(t, err)
		var p erasure.Progress
		require.NoError(t, json.Unmarshal(ev.Data, &p))
		reports = append(reports, p)
	}
	rows.Close()
	require.Len(t, reports, 1, "reported once")
	require.Equal(t, erasure.ServiceUsage, reports[0].Service)
	require.Equal(t, erasure.Count{Kind: "usage_events", Count: 2}, reports[0].Counts[0])
	require.Positive(t, reports[0].Counts[1].Count)

	// A tenant's erasure empties every table of the tenant.
	require.NoError(t, b.mod.Service().Erase(ctx, tenant, uuid.New(), nil))
	for _, table := range []string{"events", "event_keys", "rollup_daily", "rollup_type_daily", "identity_activity"} {
		require.Zero(t, count(`SELECT count(*) FROM usage.`+table+` WHERE tenant_id = $1`, tenant), table)
	}
}
