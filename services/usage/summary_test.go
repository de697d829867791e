package usage_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/services/usage"
	"github.com/manushya-ai/manushya/services/usage/store"
)

// TestDecomposeCoversEveryDayOnce checks the span decomposition the summary reads
// with: every range of up to 400 days is covered exactly, by aligned spans.
func TestDecomposeCoversEveryDayOnce(t *testing.T) {
	t.Parallel()
	base := time.Date(2025, 12, 20, 0, 0, 0, 0, time.UTC)
	for off := range 40 {
		for n := 1; n <= 400; n += 1 + n/8 {
			from := base.AddDate(0, 0, off)
			to := from.AddDate(0, 0, n-1)
			s := store.Decompose(from, to)
			var covered []time.Time
			covered = append(covered, s.Days...)
			for i, lv := range s.Levels {
				size := 1 << lv
				require.Zero(t, s.Starts[i].Unix()/86400%int64(size), "span start aligned")
				for d := range size {
					covered = append(covered, s.Starts[i].AddDate(0, 0, d))
				}
			}
			slices.SortFunc(covered, func(a, b time.Time) int { return a.Compare(b) })
			require.Len(t, covered, n, "%s + %d days", from.Format(time.DateOnly), n)
			for d := range n {
				require.Equal(t, from.AddDate(0, 0, d), covered[d])
			}
			require.LessOrEqual(t, len(s.Days)+len(s.Levels), 20)
		}
	}
}

// TestSummaryMatchesRawEvents ingests random usage, late events included, and checks
// every figure of the summary (totals, trend, top identities, active identities, with
// and without a type) against sums computed here from the events; then damages the
// summary's rollups and checks that AggregateUsage rebuilds them.
func TestSummaryMatchesRawEvents(t *testing.T) {
	t.Parallel()
	b := setupConfig(t, usage.Config{SummaryCacheTTL: -1}, nil)
	ctx := context.Background()
	tenant := uuid.MustParse(b.admin.tenant)
	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	rng := rand.New(rand.NewPCG(7, 11))
	idents := []uuid.UUID{uuid.Nil}
	for range 9 {
		idents = append(idents, uuid.New())
	}
	types := []string{"memory.write", "memory.search", "api.request"}
	var events []store.Event
	for i := range 600 {
		// Up to 34 days back; a few in the future skew of today.
		at := now.Add(-time.Duration(rng.Int64N(int64(34 * 24 * time.Hour))))
		events = append(events, store.Event{
			Tenant: tenant, ID: fmt.Sprintf("e%d", i), Source: "test", Type: types[rng.IntN(len(types))],
			Quantity: rng.Int64N(20), IdentityID: idents[rng.IntN(len(idents))], Time: at,
		})
	}
	st := store.New(b.db.Pool)
	// In several batches, so later ones add to rows earlier ones made.
	for i := 0; i < len(events); i += 150 {
		_, err := st.Ingest(ctx, events[i:i+150])
		require.NoError(t, err)
	}

	check := func(days int32, typ string) {
		t.Helper()
		start := today.AddDate(0, 0, -int(days)+1)
		prevStart := start.AddDate(0, 0, -int(days))
		type agg struct{ q, n int64 }
		cur, prev := map[string]agg{}, map[string]agg{}
		perIdent := map[string]map[uuid.UUID]agg{}
		activeCur, activePrev := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
		for _, e := range events {
			day := e.Time.Truncate(24 * time.Hour)
			if (typ != "" && e.Type != typ) || day.Before(prevStart) || day.After(today) {
				continue
			}
			m, active := prev, activePrev
			if !day.Before(start) {
				m, active = cur, activeCur
				if perIdent[e.Type] == nil {
					perIdent[e.Type] = map[uuid.UUID]agg{}
				}
				if e.IdentityID != uuid.Nil {
					a := perIdent[e.Type][e.IdentityID]
					perIdent[e.Type][e.IdentityID] = agg{a.q + e.Quantity, a.n + 1}
				}
			}
			a := m[e.Type]
			m[e.Type] = agg{a.q + e.Quantity, a.n + 1}
			if e.IdentityID != uuid.Nil {
				active[e.IdentityID] = true
			}
		}
		resp, err := b.usage.GetUsageSummary(b.admin.ctx(), &usagev1.GetUsageSummaryRequest{Days: &days, Type: typ, TopIdentitiesLimit: 3})
		require.NoError(t, err)
		what := fmt.Sprintf("days=%d type=%q", days, typ)
		require.EqualValues(t, len(activeCur), resp.GetActiveIdentityCount(), what)
		require.EqualValues(t, len(activePrev), resp.GetPreviousActiveIdentityCount(), what)
		seen := map[string]bool{}
		for _, ts := range resp.GetTypes() {
			seen[ts.GetType()] = true
			require.Equal(t, cur[ts.GetType()].q, ts.GetQuantity(), what+" "+ts.GetType())
			require.Equal(t, cur[ts.GetType()].n, ts.GetEventCount(), what+" "+ts.GetType())
			require.Equal(t, prev[ts.GetType()].q, ts.GetPreviousQuantity(), what+" "+ts.GetType())
			type row struct {
				id uuid.UUID
				agg
			}
			var want []row
			for id, a := range perIdent[ts.GetType()] {
				want = append(want, row{id, a})
			}
			slices.SortFunc(want, func(a, b row) int {
				if a.q != b.q {
					return int(b.q - a.q)
				}
				return bytes.Compare(a.id[:], b.id[:])
			})
			want = want[:min(3, len(want))]
			require.Len(t, ts.GetTopIdentities(), len(want), what+" "+ts.GetType())
			for i, w := range want {
				got := ts.GetTopIdentities()[i]
				require.Equal(t, w.id.String(), got.GetIdentityId(), what)
				require.Equal(t, w.q, got.GetQuantity(), what)
				require.Equal(t, w.n, got.GetEventCount(), what)
			}
		}
		for ty := range cur {
			require.True(t, seen[ty], what+" "+ty)
		}
		for ty := range prev {
			require.True(t, seen[ty], what+" "+ty)
		}
	}
	checkAll := func() {
		t.Helper()
		for _, days := range []int32{1, 3, 7, 16, 30, 31} {
			check(days, "")
		}
		check(30, "memory.search")
		check(9, "api.request")
	}
	checkAll()

	// Damage every rollup the summary reads; re-aggregation puts them right.
	conn, err := pgx.Connect(ctx, b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	for _, q := range []string{
		"UPDATE usage.rollup_span SET quantity = quantity + 5 WHERE level IN (1, 4)",
		"DELETE FROM usage.rollup_span WHERE level = 3",
		"INSERT INTO usage.rollup_span SELECT DISTINCT tenant_id, 2, start_day, 'memory.read', identity_id, 1000, 1 FROM usage.rollup_span WHERE level = 2",
		"UPDATE usage.rollup_type_daily SET quantity = 0",
		"UPDATE usage.identity_activity SET days = ~days",
	} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	agg, err := b.usage.AggregateUsage(b.admin.ctx(), &usagev1.AggregateUsageRequest{
		StartDate: today.AddDate(0, 0, -70).Format(time.DateOnly), EndDate: today.Format(time.DateOnly),
	})
	require.NoError(t, err)
	require.Zero(t, agg.GetRowsUpdated(), "the daily rollups were right")
	checkAll()
}
