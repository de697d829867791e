package usage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/usage"
	"github.com/manushya-ai/manushya/services/usage/store"
)

var accessMemory = authz.Access{Permission: "memory.search", Resource: "memory", Action: "search"}

func TestRetentionDropsWholePartitions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, usage.Migrations())
	st := store.New(db.Pool)
	ctx := context.Background()
	jan := time.Date(2020, 1, 15, 0, 0, 0, 0, time.UTC)
	n, err := st.EnsurePartitions(ctx, jan, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = st.EnsurePartitions(ctx, jan, 2)
	require.NoError(t, err)
	require.Zero(t, n, "idempotent")
	// Mid-February: only January is wholly before the cut.
	dropped, err := st.DropPartitionsBefore(ctx, time.Date(2020, 2, 20, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Equal(t, []string{"events_2020_01"}, dropped)
}

func TestPruneRemovesExpiredKeysOfEveryTenant(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, usage.Migrations())
	st := store.New(db.Pool)
	ctx := context.Background()
	now := time.Now()
	var batch []store.Event
	for range 3 {
		batch = append(batch, store.Event{Tenant: uuid.New(), ID: "x", Source: "s", Type: "memory.write", Quantity: 1, Time: now})
	}
	_, err := st.Ingest(ctx, batch)
	require.NoError(t, err)
	n, err := st.Prune(ctx, now.Add(-time.Hour), now.Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = st.Prune(ctx, now.Add(time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 6, n, "three keys and three minute rollups")
	// The daily rollups and raw events stay.
	fresh, err := st.Ingest(ctx, batch[:1])
	require.NoError(t, err)
	require.True(t, fresh[0], "a pruned key no longer deduplicates")
}
