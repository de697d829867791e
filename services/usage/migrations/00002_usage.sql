-- +goose Up

-- Rate limits: global defaults (tenant_id NULL, operator-managed) and tenants' own
-- overrides. Tenants read their own rows and the globals; a transaction bound to a
-- tenant writes only that tenant's rows, and only a transaction bound to no tenant
-- (the operator's path) writes globals.
CREATE TABLE usage.rate_limits (
  id          uuid PRIMARY KEY,
  tenant_id   uuid,
  scope       text NOT NULL CHECK (scope IN ('role', 'tenant', 'identity', 'api_key')),
  subject     text NOT NULL DEFAULT '',
  route_group text NOT NULL DEFAULT '',
  rate        bigint NOT NULL CHECK (rate >= 1),
  period_ms   bigint NOT NULL CHECK (period_ms BETWEEN 1000 AND 86400000),
  burst       bigint NOT NULL DEFAULT 0 CHECK (burst >= 0),
  cost        integer NOT NULL DEFAULT 0 CHECK (cost >= 0),
  shadow      boolean NOT NULL DEFAULT false,
  description text NOT NULL DEFAULT '',
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  CHECK (scope <> 'tenant' OR subject = ''),
  CONSTRAINT rate_limits_slot UNIQUE NULLS NOT DISTINCT (tenant_id, scope, subject, route_group)
);
ALTER TABLE usage.rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.rate_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY read_own_and_global ON usage.rate_limits FOR SELECT
  USING (tenant_id IS NULL OR tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);
CREATE POLICY write_own ON usage.rate_limits FOR ALL
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid
         OR (tenant_id IS NULL AND NULLIF(current_setting('manushya.tenant_id', true), '') IS NULL))
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid
         OR (tenant_id IS NULL AND NULLIF(current_setting('manushya.tenant_id', true), '') IS NULL));

-- Raw usage events, partitioned by month of event_time so retention drops whole
-- partitions. Partitions are created ahead by usage.ensure_event_partitions, which
-- runs as the owner (the app role may not create tables).
CREATE TABLE usage.events (
  tenant_id   uuid NOT NULL,
  id          text NOT NULL,
  source      text NOT NULL,
  type        text NOT NULL,
  quantity    bigint NOT NULL CHECK (quantity >= 0),
  identity_id uuid NOT NULL,
  event_time  timestamptz NOT NULL,
  properties  jsonb NOT NULL DEFAULT '{}',
  create_time timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (event_time);
-- Keyset listing, newest first.
CREATE INDEX events_list ON usage.events (tenant_id, event_time DESC, source DESC, id DESC);
ALTER TABLE usage.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.events
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Deduplication keys of accepted events. A unique index on the partitioned table
-- would have to include event_time, and a retry may carry another time, so the keys
-- live here; rows older than the late-arrival window are pruned.
CREATE TABLE usage.event_keys (
  tenant_id   uuid NOT NULL,
  source      text NOT NULL,
  id          text NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, source, id)
);
CREATE INDEX event_keys_age ON usage.event_keys (create_time);
-- Not FORCEd, unlike the other tenant tables: the owner-run prune function below
-- must see every tenant's expired keys; the app role is still filtered.
ALTER TABLE usage.event_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.event_keys
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Rollups, kept up to date incrementally by ingestion (INSERT ... ON CONFLICT DO
-- UPDATE into the bucket of the event's own time, so late events correct the bucket
-- they belong to) and rebuilt from raw events by AggregateUsage. identity_id is the
-- nil UUID for usage billed to no identity.
CREATE TABLE usage.rollup_minute (
  tenant_id   uuid NOT NULL,
  bucket      timestamptz NOT NULL,
  type        text NOT NULL,
  identity_id uuid NOT NULL,
  quantity    bigint NOT NULL,
  event_count bigint NOT NULL,
  PRIMARY KEY (tenant_id, bucket, type, identity_id)
);
-- Not FORCEd, for the same reason as event_keys (pruned by the owner-run function).
ALTER TABLE usage.rollup_minute ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.rollup_minute
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

CREATE TABLE usage.rollup_daily (
  tenant_id   uuid NOT NULL,
  day         date NOT NULL,
  type        text NOT NULL,
  identity_id uuid NOT NULL,
  quantity    bigint NOT NULL,
  event_count bigint NOT NULL,
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, day, type, identity_id)
);
ALTER TABLE usage.rollup_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.rollup_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.rollup_daily
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Monthly quotas per usage type, and the warnings already sent for a month (each
-- level once per period).
CREATE TABLE usage.quotas (
  tenant_id     uuid NOT NULL,
  type          text NOT NULL,
  monthly_limit bigint NOT NULL CHECK (monthly_limit >= 1),
  enforcement   text NOT NULL CHECK (enforcement IN ('report_only', 'enforce')),
  update_time   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, type)
);
ALTER TABLE usage.quotas ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.quotas FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.quotas
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

CREATE TABLE usage.quota_notices (
  tenant_id   uuid NOT NULL,
  type        text NOT NULL,
  period      date NOT NULL,
  level       text NOT NULL CHECK (level IN ('warning', 'exceeded')),
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, type, period, level)
);
ALTER TABLE usage.quota_notices ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage.quota_notices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage.quota_notices
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Partition maintenance runs as the owner (SECURITY DEFINER) because the app role
-- may not create or drop tables; both functions touch only usage.events partitions.
-- +goose StatementBegin
CREATE FUNCTION usage.ensure_event_partitions(from_month date, months integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = usage, pg_temp AS $$
DECLARE
  m date := date_trunc('month', from_month)::date;
  created integer := 0;
  name text;
BEGIN
  IF months < 1 OR months > 24 THEN
    RAISE EXCEPTION 'months must be 1 to 24, got %', months;
  END IF;
  FOR i IN 0 .. months - 1 LOOP
    name := format('events_%s', to_char(m, 'YYYY_MM'));
    IF to_regclass(format('usage.%I', name)) IS NULL THEN
      EXECUTE format('CREATE TABLE usage.%I PARTITION OF usage.events FOR VALUES FROM (%L) TO (%L)',
        name, m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month') AT TIME ZONE 'UTC');
      created := created + 1;
    END IF;
    m := (m + interval '1 month')::date;
  END LOOP;
  RETURN created;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION usage.drop_event_partitions(before timestamptz)
RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER SET search_path = usage, pg_temp AS $$
DECLARE
  part record;
BEGIN
  FOR part IN
    SELECT c.relname
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace
    WHERE n.nspname = 'usage' AND p.relname = 'events' AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
  LOOP
    -- A partition goes only when its whole month is before the cut-off.
    IF (to_date(substr(part.relname, 8), 'YYYY_MM') + interval '1 month') AT TIME ZONE 'UTC' <= before THEN
      EXECUTE format('DROP TABLE usage.%I', part.relname);
      RETURN NEXT part.relname;
    END IF;
  END LOOP;
END
$$;
-- +goose StatementEnd

-- Expired dedup keys (older than the late window, so no event they guard can still
-- be accepted) and minute rollups past their retention, in every tenant.
-- +goose StatementBegin
CREATE FUNCTION usage.prune(keys_before timestamptz, minutes_before timestamptz)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = usage, pg_temp AS $$
DECLARE
  a bigint;
  b bigint;
BEGIN
  DELETE FROM usage.event_keys WHERE create_time < keys_before;
  GET DIAGNOSTICS a = ROW_COUNT;
  DELETE FROM usage.rollup_minute WHERE bucket < minutes_before;
  GET DIAGNOSTICS b = ROW_COUNT;
  RETURN a + b;
END
$$;
-- +goose StatementEnd

SELECT usage.ensure_event_partitions((now() AT TIME ZONE 'UTC' - interval '2 months')::date, 6);

-- +goose Down
DROP FUNCTION usage.prune(timestamptz, timestamptz);
DROP FUNCTION usage.drop_event_partitions(timestamptz);
DROP FUNCTION usage.ensure_event_partitions(date, integer);
DROP TABLE usage.quota_notices;
DROP TABLE usage.quotas;
DROP TABLE usage.rollup_daily;
DROP TABLE usage.rollup_minute;
DROP TABLE usage.event_keys;
DROP TABLE usage.events;
DROP TABLE usage.rate_limits;
