package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// spanLevels is the highest level of usage.rollup_span: spans of up to 2^8 = 256
// days.
const spanLevels = 8

// epochDay is the day number of t since 1970-01-01 (UTC).
func epochDay(t time.Time) int64 {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

func dayOf(n int64) time.Time { return time.Unix(n*86400, 0).UTC() }

// Spans is a range of days cut into the rows that hold its sums: single days (read
// from rollup_daily) and aligned spans of 2^Level days (rollup_span).
type Spans struct {
	Days   []time.Time
	Levels []int16
	Starts []time.Time
}

// Decompose cuts the days [from, to] greedily into the longest aligned spans that
// fit, so a range of n days needs at most about 2*log2(n) rows per identity and type.
func Decompose(from, to time.Time) Spans {
	var s Spans
	for d, e := epochDay(from), epochDay(to); d <= e; {
		k := spanLevels
		for k > 0 && (d%(1<<k) != 0 || d+(1<<k)-1 > e) {
			k--
		}
		if k == 0 {
			s.Days = append(s.Days, dayOf(d))
		} else {
			s.Levels = append(s.Levels, int16(k))
			s.Starts = append(s.Starts, dayOf(d))
		}
		d += 1 << k
	}
	return s
}

// activityMasks are, per year that [from, to] touches, the usage.identity_activity
// bits of its days, as bit strings.
func activityMasks(from, to time.Time) (years []int32, masks []string) {
	for d, e := epochDay(from), epochDay(to); d <= e; {
		day := dayOf(d)
		mask := []byte(strings.Repeat("0", 366))
		y := day.Year()
		for ; d <= e && dayOf(d).Year() == y; d++ {
			mask[dayOf(d).YearDay()-1] = '1'
		}
		years, masks = append(years, int32(y)), append(masks, string(mask))
	}
	return years, masks
}

// TypeTotal is the usage of one type over a period, with its top identities.
type TypeTotal struct {
	Type       string
	Quantity   int64
	EventCount int64
	Top        []Daily // IdentityID, Quantity, EventCount set
}

// Summary is the usage of a period.
type Summary struct {
	Types          []TypeTotal
	ActiveIdentity int64
}

const (
	// summaryTotalsSQL: totals per type of both periods from the per-type rollup.
	summaryTotalsSQL = `SELECT day >= $2, type, sum(quantity)::bigint, sum(event_count)::bigint
FROM usage.rollup_type_daily
WHERE day >= $1 AND day <= $3 AND ($4 = '' OR type = $4)
GROUP BY 1, 2`
	// summaryActiveSQL: identities with usage (of type $4, '' for any) on a day of
	// each period's masks. An identity counts once per period even when the period
	// spans two years.
	summaryActiveSQL = `SELECT m.cur, count(DISTINCT a.identity_id)
FROM unnest($1::integer[], $2::text[], $3::boolean[]) AS m(year, mask, cur)
JOIN usage.identity_activity a ON a.year = m.year AND a.type = $4
WHERE bit_count(a.days & m.mask::bit(366)) > 0
GROUP BY m.cur`
	// summaryTopSQL: the top identities of each type over the current period, from
	// its spans and single days.
	summaryTopSQL = `WITH per AS (
  SELECT type, identity_id, sum(quantity)::bigint AS q, sum(event_count)::bigint AS n
  FROM (
    SELECT s.type, s.identity_id, s.quantity, s.event_count
    FROM unnest($1::smallint[], $2::date[]) AS b(level, start_day)
    JOIN usage.rollup_span s ON s.level = b.level AND s.start_day = b.start_day
    WHERE $4 = '' OR s.type = $4
    UNION ALL
    SELECT type, identity_id, quantity, event_count
    FROM usage.rollup_daily
    WHERE day = ANY($3::date[]) AND identity_id <> '00000000-0000-0000-0000-000000000000' AND ($4 = '' OR type = $4)
  ) u
  GROUP BY 1, 2
)
SELECT type, identity_id, q, n FROM (
  SELECT *, row_number() OVER (PARTITION BY type ORDER BY q DESC, identity_id) AS rn FROM per
) r WHERE rn <= $5`
)

// Summarize totals the days [start, end] per type, with the top identities of each
// and the number of identities with any usage, and the same totals (without top
// identities) for the days [prevStart, start). It reads the summary rollups only
// (per-type days, identity spans, identity activity), in one round trip.
func (t *Tx) Summarize(ctx context.Context, prevStart, start, end time.Time, typ string, top int) (cur, prev Summary, err error) {
	wrap := func(err error) error { return fmt.Errorf("summarize usage: %w", err) }
	var years []int32
	var masks []string
	var isCur []bool
	for _, p := range []struct {
		from, to time.Time
		cur      bool
	}{{start, end, true}, {prevStart, start.AddDate(0, 0, -1), false}} {
		y, m := activityMasks(p.from, p.to)
		years, masks = append(years, y...), append(masks, m...)
		for range y {
			isCur = append(isCur, p.cur)
		}
	}
	spans := Decompose(start, end)
	var b pgx.Batch
	// Generic plans cannot see how few rows the arrays select.
	b.Queue("SET LOCAL plan_cache_mode = force_custom_plan")
	b.Queue(summaryTotalsSQL, prevStart, start, end, typ)
	b.Queue(summaryActiveSQL, years, masks, isCur, typ)
	b.Queue(summaryTopSQL, spans.Levels, spans.Starts, spans.Days, typ, top)
	res := t.tx.SendBatch(ctx, &b)
	defer func() { _ = res.Close() }()
	if _, err := res.Exec(); err != nil {
		return cur, prev, wrap(err)
	}
	var (
		c bool
		d Daily
	)
	_, err = pgx.ForEachRow(mustQuery(res), []any{&c, &d.Type, &d.Quantity, &d.EventCount}, func() error {
		s := &prev
		if c {
			s = &cur
		}
		s.Types = append(s.Types, TypeTotal{Type: d.Type, Quantity: d.Quantity, EventCount: d.EventCount})
		return nil
	})
	if err != nil {
		return cur, prev, wrap(err)
	}
	var n int64
	_, err = pgx.ForEachRow(mustQuery(res), []any{&c, &n}, func() error {
		if c {
			cur.ActiveIdentity = n
		} else {
			prev.ActiveIdentity = n
		}
		return nil
	})
	if err != nil {
		return cur, prev, wrap(err)
	}
	tops := map[string][]Daily{}
	_, err = pgx.ForEachRow(mustQuery(res), []any{&d.Type, &d.IdentityID, &d.Quantity, &d.EventCount}, func() error {
		tops[d.Type] = append(tops[d.Type], Daily{Type: d.Type, IdentityID: d.IdentityID, Quantity: d.Quantity, EventCount: d.EventCount})
		return nil
	})
	if err != nil {
		return cur, prev, wrap(err)
	}
	if err := res.Close(); err != nil {
		return cur, prev, wrap(err)
	}
	for _, s := range []*Summary{&cur, &prev} {
		slices.SortFunc(s.Types, func(a, b TypeTotal) int { return strings.Compare(a.Type, b.Type) })
	}
	for i := range cur.Types {
		top := tops[cur.Types[i].Type]
		slices.SortFunc(top, func(a, b Daily) int {
			if a.Quantity != b.Quantity {
				return cmp.Compare(b.Quantity, a.Quantity)
			}
			return slices.Compare(a.IdentityID[:], b.IdentityID[:])
		})
		cur.Types[i].Top = top
	}
	return cur, prev, nil
}

// mustQuery reads the next result of a batch as rows; an error surfaces from the
// rows.
func mustQuery(res pgx.BatchResults) pgx.Rows {
	rows, _ := res.Query()
	return rows
}

// Rederive rebuilds the summary's rollups (per-type days, identity spans, identity
// activity) for the days [from, to) from the daily rollup, optionally for some
// types only. Spans that reach outside the range are rebuilt whole, from the
// rollup of the level below.
func (t *Tx) Rederive(ctx context.Context, tenant uuid.UUID, from, to time.Time, types []string) error {
	if types == nil {
		types = []string{}
	}
	fromDay, toDay := dayOf(epochDay(from)), dayOf(epochDay(to))
	wrap := func(what string, err error) error { return fmt.Errorf("rebuild %s usage rollup: %w", what, err) }
	const typeDaily = `WITH fresh AS (
  SELECT day, type, sum(quantity)::bigint AS q, sum(event_count)::bigint AS n, max(update_time) AS u
  FROM usage.rollup_daily
  WHERE day >= $2 AND day < $3 AND (cardinality($4::text[]) = 0 OR type = ANY($4))
  GROUP BY 1, 2
), up AS (
  INSERT INTO usage.rollup_type_daily AS r (tenant_id, day, type, quantity, event_count, update_time)
  SELECT $1, day, type, q, n, u FROM fresh ORDER BY 2, 3
  ON CONFLICT (tenant_id, day, type) DO UPDATE
  SET quantity = excluded.quantity, event_count = excluded.event_count, update_time = now()
  WHERE (r.quantity, r.event_count) IS DISTINCT FROM (excluded.quantity, excluded.event_count)
)
DELETE FROM usage.rollup_type_daily r
WHERE r.day >= $2 AND r.day < $3 AND (cardinality($4::text[]) = 0 OR r.type = ANY($4))
  AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.day = r.day AND f.type = r.type)`
	if _, err := t.tx.Exec(ctx, typeDaily, tenant, fromDay, toDay, types); err != nil {
		return wrap("per-type daily", err)
	}
	// Level k is summed from level k-1 (level 0 being the daily rollup) over the
	// level-k spans that overlap the range; each statement sees the previous one's
	// rows.
	const spanSQL = `WITH bounds AS (
  SELECT $2::date - (($2::date - date '1970-01-01') % (1 << $5::integer)) AS lo,
         $3::date - 1 - (($3::date - 1 - date '1970-01-01') % (1 << $5::integer)) + (1 << $5::integer) AS hi
), below AS (
  SELECT day AS start_day, type, identity_id, quantity, event_count FROM usage.rollup_daily, bounds
  WHERE $5::integer = 1 AND day >= lo AND day < hi AND identity_id <> '00000000-0000-0000-0000-000000000000'
  UNION ALL
  SELECT start_day, type, identity_id, quantity, event_count FROM usage.rollup_span, bounds
  WHERE $5::integer > 1 AND level = $5::integer - 1 AND start_day >= lo AND start_day < hi
), fresh AS (
  SELECT start_day - ((start_day - date '1970-01-01') % (1 << $5::integer)) AS start_day, type, identity_id,
         sum(quantity)::bigint AS q, sum(event_count)::bigint AS n
  FROM below WHERE cardinality($4::text[]) = 0 OR type = ANY($4)
  GROUP BY 1, 2, 3
), up AS (
  INSERT INTO usage.rollup_span AS r (tenant_id, level, start_day, type, identity_id, quantity, event_count)
  SELECT $1, $5::integer, start_day, type, identity_id, q, n FROM fresh ORDER BY 3, 4, 5
  ON CONFLICT (tenant_id, level, start_day, type, identity_id) DO UPDATE
  SET quantity = excluded.quantity, event_count = excluded.event_count
  WHERE (r.quantity, r.event_count) IS DISTINCT FROM (excluded.quantity, excluded.event_count)
)
DELETE FROM usage.rollup_span r USING bounds
WHERE r.level = $5::integer AND r.start_day >= lo AND r.start_day < hi AND (cardinality($4::text[]) = 0 OR r.type = ANY($4))
  AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.start_day = r.start_day AND f.type = r.type AND f.identity_id = r.identity_id)`
	for level := 1; level <= spanLevels; level++ {
		if _, err := t.tx.Exec(ctx, spanSQL, tenant, fromDay, toDay, types, level); err != nil {
			return wrap(fmt.Sprintf("level %d span", level), err)
		}
	}
	// Activity: clear the range's days, then mark those with usage again. The type
	// filter does not narrow it: '' rows depend on every type, and the daily rollup
	// outside the filter is as it was.
	years, masks := activityMasks(fromDay, toDay.AddDate(0, 0, -1))
	if _, err := t.tx.Exec(ctx, `UPDATE usage.identity_activity a SET days = a.days & ~m.mask::bit(366)
FROM unnest($1::integer[], $2::text[]) AS m(year, mask)
WHERE a.year = m.year AND bit_count(a.days & m.mask::bit(366)) > 0`, years, masks); err != nil {
		return wrap("activity", err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO usage.identity_activity AS r (tenant_id, year, type, identity_id, days)
SELECT $1, extract(year FROM d.day)::integer, t.type, d.identity_id,
       bit_or(set_bit(`+zeroDays+`, extract(doy FROM d.day)::integer - 1, 1))
FROM usage.rollup_daily d CROSS JOIN LATERAL (VALUES (d.type), ('')) AS t(type)
WHERE d.day >= $2 AND d.day < $3 AND d.identity_id <> '00000000-0000-0000-0000-000000000000'
GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
ON CONFLICT (tenant_id, year, type, identity_id) DO UPDATE SET days = r.days | excluded.days`, tenant, fromDay, toDay); err != nil {
		return wrap("activity", err)
	}
	// Rows left with no day are dead weight in every count.
	if _, err := t.tx.Exec(ctx, `DELETE FROM usage.identity_activity WHERE year = ANY($1) AND bit_count(days) = 0`, years); err != nil {
		return wrap("activity", err)
	}
	return nil
}
