package usage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/usage"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// BenchmarkStoreIngest measures the storage statement alone: batches of 1000
// events of one tenant into raw events and both rollups.
//
//	go test ./services/usage -run '^$' -bench StoreIngest
func BenchmarkStoreIngest(b *testing.B) {
	db := pgtest.New(b, usage.Migrations())
	st := store.New(db.Pool)
	tenant := uuid.New()
	owners := make([]uuid.UUID, 100)
	for i := range owners {
		owners[i] = uuid.New()
	}
	now := time.Now()
	b.ResetTimer()
	for range b.N {
		batch := make([]store.Event, 1000)
		for j := range batch {
			batch[j] = store.Event{Tenant: tenant, ID: uuid.NewString(), Source: "bench", Type: "memory.write", Quantity: 1, IdentityID: owners[j%100], Time: now}
		}
		_, err := st.Ingest(context.Background(), batch)
		require.NoError(b, err)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}
