-- +goose Up
-- Domain events as recorded by the event store consumer: one row per CloudEvent,
-- idempotent on (id, event_time). Partitioned by day so retention drops whole
-- partitions instead of deleting rows.
CREATE TABLE webhooks.events (
  id          uuid NOT NULL,
  tenant_id   uuid NOT NULL,
  type        text NOT NULL,
  source      text NOT NULL,
  subject     text NOT NULL DEFAULT '',
  identity_id uuid,
  request_id  text NOT NULL DEFAULT '',
  test        boolean NOT NULL DEFAULT false,
  event_time  timestamptz NOT NULL,
  data        jsonb,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (id, event_time)
) PARTITION BY RANGE (event_time);
CREATE INDEX events_tenant_time ON webhooks.events (tenant_id, event_time DESC, id DESC);
CREATE INDEX events_tenant_identity ON webhooks.events (tenant_id, identity_id, event_time DESC) WHERE identity_id IS NOT NULL;

-- Webhook endpoints. secret and headers hold sealed bytes (see the Sealer interface);
-- the API never returns a secret after create or rotate.
CREATE TABLE webhooks.endpoints (
  id                     uuid PRIMARY KEY,
  tenant_id              uuid NOT NULL,
  name                   text NOT NULL,
  url                    text NOT NULL,
  events                 text[] NOT NULL,
  description            text NOT NULL DEFAULT '',
  enabled                boolean NOT NULL DEFAULT true,
  headers                bytea,
  rate_limit_per_second  integer NOT NULL DEFAULT 0,
  ordered                boolean NOT NULL DEFAULT false,
  secret                 bytea NOT NULL,
  previous_secret        bytea,
  previous_secret_expire_time timestamptz,
  disabled_reason        smallint NOT NULL DEFAULT 0,
  failing_since          timestamptz,
  create_time            timestamptz NOT NULL DEFAULT now(),
  update_time            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoints_tenant_created ON webhooks.endpoints (tenant_id, create_time DESC, id DESC);

-- One event on its way to one endpoint. body is the exact JSON POSTed, so every
-- attempt (and its signature) covers the same bytes.
CREATE TABLE webhooks.deliveries (
  id                 uuid PRIMARY KEY,
  tenant_id          uuid NOT NULL,
  webhook_id         uuid NOT NULL REFERENCES webhooks.endpoints (id) ON DELETE CASCADE,
  event_id           uuid NOT NULL,
  event_type         text NOT NULL,
  event_time         timestamptz NOT NULL,
  body               bytea NOT NULL,
  status             smallint NOT NULL,
  attempt_count      integer NOT NULL DEFAULT 0,
  next_attempt_time  timestamptz,
  last_status_code   integer NOT NULL DEFAULT 0,
  last_error         text NOT NULL DEFAULT '',
  last_attempt_time  timestamptz,
  replay             boolean NOT NULL DEFAULT false,
  create_time        timestamptz NOT NULL DEFAULT now(),
  update_time        timestamptz NOT NULL DEFAULT now()
);
-- The dispatcher may see an event twice (at-least-once bus): one live delivery per
-- endpoint and event.
CREATE UNIQUE INDEX deliveries_live_once ON webhooks.deliveries (webhook_id, event_id) WHERE NOT replay;
CREATE INDEX deliveries_webhook_created ON webhooks.deliveries (webhook_id, create_time DESC, id DESC);

-- Work queue of the delivery workers: due deliveries across tenants. It holds ids
-- and times only, no tenant-readable data, so it has no RLS (like the outbox); the
-- worker loads the delivery itself in a tenant transaction.
CREATE TABLE webhooks.delivery_queue (
  delivery_id       uuid PRIMARY KEY REFERENCES webhooks.deliveries (id) ON DELETE CASCADE,
  tenant_id         uuid NOT NULL,
  webhook_id        uuid NOT NULL,
  event_time        timestamptz NOT NULL, -- strict per-endpoint ordering follows it
  next_attempt_time timestamptz NOT NULL,
  seq               bigserial NOT NULL,
  leased_until      timestamptz
);
CREATE INDEX delivery_queue_due ON webhooks.delivery_queue (next_attempt_time);
CREATE INDEX delivery_queue_webhook ON webhooks.delivery_queue (webhook_id, event_time);

-- Every HTTP attempt of a delivery, partitioned by day and dropped whole at
-- retention.
CREATE TABLE webhooks.attempts (
  tenant_id              uuid NOT NULL,
  delivery_id            uuid NOT NULL,
  webhook_id             uuid NOT NULL,
  attempt_number         integer NOT NULL,
  request_headers        jsonb NOT NULL,
  request_body           text NOT NULL,
  request_body_truncated boolean NOT NULL,
  response_status_code   integer NOT NULL,
  response_headers       jsonb NOT NULL,
  response_body          text NOT NULL,
  response_body_truncated boolean NOT NULL,
  latency_us             bigint NOT NULL,
  error                  text NOT NULL,
  start_time             timestamptz NOT NULL,
  PRIMARY KEY (delivery_id, attempt_number, start_time)
) PARTITION BY RANGE (start_time);
CREATE INDEX attempts_webhook_time ON webhooks.attempts (webhook_id, start_time);

ALTER TABLE webhooks.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks.events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks.events
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);
ALTER TABLE webhooks.endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks.endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks.endpoints
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);
ALTER TABLE webhooks.deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks.deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks.deliveries
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);
ALTER TABLE webhooks.attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks.attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks.attempts
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- The app role cannot create or drop tables; these two functions, owned by the
-- migration role, manage the day partitions of events and attempts only.
-- +goose StatementBegin
CREATE FUNCTION webhooks.ensure_day_partition(parent text, day date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  part text := parent || '_' || to_char(day, 'YYYYMMDD');
BEGIN
  IF parent NOT IN ('events', 'attempts') THEN
    RAISE EXCEPTION 'not a partitioned table: %', parent;
  END IF;
  IF to_regclass('webhooks.' || part) IS NOT NULL THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('webhooks.' || part));
  EXECUTE format('CREATE TABLE IF NOT EXISTS webhooks.%I PARTITION OF webhooks.%I FOR VALUES FROM (%L) TO (%L)',
    part, parent, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION webhooks.drop_day_partitions_before(parent text, cutoff date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  r record;
  n integer := 0;
BEGIN
  IF parent NOT IN ('events', 'attempts') THEN
    RAISE EXCEPTION 'not a partitioned table: %', parent;
  END IF;
  FOR r IN
    SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace ns ON ns.oid = p.relnamespace
    WHERE ns.nspname = 'webhooks' AND p.relname = parent
      AND c.relname ~ ('^' || parent || '_[0-9]{8}$')
      AND to_date(right(c.relname, 8), 'YYYYMMDD') < cutoff
  LOOP
    EXECUTE format('DROP TABLE webhooks.%I', r.relname);
    n := n + 1;
  END LOOP;
  RETURN n;
END $$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION webhooks.drop_day_partitions_before(text, date);
DROP FUNCTION webhooks.ensure_day_partition(text, date);
DROP TABLE webhooks.attempts;
DROP TABLE webhooks.delivery_queue;
DROP TABLE webhooks.deliveries;
DROP TABLE webhooks.endpoints;
DROP TABLE webhooks.events;
