-- +goose Up

-- Rollups the usage summary reads, so a summary over a month touches hundreds of rows
-- rather than one per (day, type, identity). All three are derived from
-- usage.rollup_daily: ingestion adds to them in the same statement as to the daily
-- rollup (each event to the buckets of its own day, so late events correct them), and
-- AggregateUsage rebuilds them after rebuilding the daily rows of a range.

-- Per (tenant, day, type), without identity: totals and the trend.
CREATE TABLE usage.rollup_type_daily (
  tenant_id   uuid NOT NULL,
  day         date NOT NULL,
  type        text NOT NULL,
  quantity    bigint NOT NULL,
  event_count bigint NOT NULL,
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, day, type)
);
ALTER TABLE usage.rollup_type_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.rollup_type_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.rollup_type_daily
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Per (tenant, type, identity) sums over aligned spans of 2^level days, levels 1 to
-- 8 (2 to 256 days; level 0 is rollup_daily itself). A span of level k starts on a
-- day whose number since 1970-01-01 is a multiple of 2^k, so any range of days is the
-- union of a few disjoint spans (about 2*log2 of its length: five or so for 30 days),
-- and the top identities of a period sum a few rows per identity instead of one per
-- day. Usage billed to no identity has no rows here (the totals come from
-- rollup_type_daily).
CREATE TABLE usage.rollup_span (
  tenant_id   uuid NOT NULL,
  level       smallint NOT NULL CHECK (level BETWEEN 1 AND 8),
  start_day   date NOT NULL,
  type        text NOT NULL,
  identity_id uuid NOT NULL,
  quantity    bigint NOT NULL,
  event_count bigint NOT NULL,
  PRIMARY KEY (tenant_id, level, start_day, type, identity_id)
);
ALTER TABLE usage.rollup_span ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.rollup_span FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.rollup_span
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- The days of a year on which an identity had usage of a type (type '' for usage of
-- any type), one bit per day of the year (bit 0 is 1 January). Counting the
-- identities active in a period is then one row per identity and year, tested
-- against a mask of the period's days.
CREATE TABLE usage.identity_activity (
  tenant_id   uuid NOT NULL,
  year        integer NOT NULL,
  type        text NOT NULL,
  identity_id uuid NOT NULL,
  days        bit(366) NOT NULL,
  PRIMARY KEY (tenant_id, year, type, identity_id)
);
ALTER TABLE usage.identity_activity ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.identity_activity FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.identity_activity
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Backfill from the daily rollups already there. rollup_daily is FORCEd, so even the
-- owner sees no rows without a tenant; lift that for the copy only.
ALTER TABLE usage.rollup_daily NO FORCE ROW LEVEL SECURITY;
ALTER TABLE usage.rollup_type_daily NO FORCE ROW LEVEL SECURITY;
ALTER TABLE usage.rollup_span NO FORCE ROW LEVEL SECURITY;
ALTER TABLE usage.identity_activity NO FORCE ROW LEVEL SECURITY;

INSERT INTO usage.rollup_type_daily (tenant_id, day, type, quantity, event_count, update_time)
SELECT tenant_id, day, type, sum(quantity), sum(event_count), max(update_time)
FROM usage.rollup_daily GROUP BY 1, 2, 3;

INSERT INTO usage.rollup_span (tenant_id, level, start_day, type, identity_id, quantity, event_count)
SELECT tenant_id, l.level, day - ((day - date '1970-01-01') % (1 << l.level)), type, identity_id,
       sum(quantity), sum(event_count)
FROM usage.rollup_daily CROSS JOIN generate_series(1, 8) AS l(level)
WHERE identity_id <> '00000000-0000-0000-0000-000000000000'
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO usage.identity_activity (tenant_id, year, type, identity_id, days)
SELECT tenant_id, extract(year FROM day)::integer, t.type, identity_id,
       bit_or(set_bit(repeat('0', 366)::bit(366), extract(doy FROM day)::integer - 1, 1))
FROM usage.rollup_daily d CROSS JOIN LATERAL (VALUES (d.type), ('')) AS t(type)
WHERE identity_id <> '00000000-0000-0000-0000-000000000000'
GROUP BY 1, 2, 3, 4;

ALTER TABLE usage.rollup_daily FORCE ROW LEVEL SECURITY;
ALTER TABLE usage.rollup_type_daily FORCE ROW LEVEL SECURITY;
ALTER TABLE usage.rollup_span FORCE ROW LEVEL SECURITY;
ALTER TABLE usage.identity_activity FORCE ROW LEVEL SECURITY;

-- +goose Down
DROP TABLE usage.identity_activity;
DROP TABLE usage.rollup_span;
DROP TABLE usage.rollup_type_daily;
