-- +goose Up
-- The audit log: append-only, hash-chained per tenant. hash = sha256(prev_hash ||
-- canonical JSON of the entry); sequence numbers have no gaps, so a removed,
-- inserted or edited row breaks verification.
CREATE TABLE webhooks.audit_entries (
  tenant_id         uuid NOT NULL,
  sequence          bigint NOT NULL,
  id                uuid NOT NULL UNIQUE,
  source_event_id   uuid,
  actor_identity_id text NOT NULL DEFAULT '',
  actor_kind        smallint NOT NULL,
  actor_api_key_id  text NOT NULL DEFAULT '',
  actor_session_id  text NOT NULL DEFAULT '',
  actor_external_id text NOT NULL DEFAULT '',
  action            text NOT NULL,
  resource_type     text NOT NULL,
  resource_id       text NOT NULL DEFAULT '',
  before            jsonb,
  after             jsonb,
  request_id        text NOT NULL DEFAULT '',
  client_ip         text NOT NULL DEFAULT '',
  user_agent        text NOT NULL DEFAULT '',
  result            smallint NOT NULL,
  error_reason      integer NOT NULL DEFAULT 0,
  create_time       timestamptz NOT NULL,
  prev_hash         text NOT NULL,
  hash              text NOT NULL,
  PRIMARY KEY (tenant_id, sequence)
);
-- The audit writer is idempotent on the event it records.
CREATE UNIQUE INDEX audit_entries_event ON webhooks.audit_entries (tenant_id, source_event_id) WHERE source_event_id IS NOT NULL;
CREATE INDEX audit_entries_time ON webhooks.audit_entries (tenant_id, create_time);

-- The head of each tenant's chain, locked while appending so entries chain in order.
CREATE TABLE webhooks.audit_heads (
  tenant_id uuid PRIMARY KEY,
  sequence  bigint NOT NULL,
  hash      text NOT NULL
);

-- Audit retention per tenant. Days only, no tenant data, so no RLS: the retention
-- job reads every tenant's setting.
CREATE TABLE webhooks.audit_settings (
  tenant_id      uuid PRIMARY KEY,
  retention_days integer NOT NULL,
  update_time    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE webhooks.audit_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks.audit_entries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks.audit_entries
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);
ALTER TABLE webhooks.audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks.audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks.audit_heads
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Append-only: updates are refused for every role, the owner included. Deletes
-- stay possible for retention, which removes the oldest entries only.
-- +goose StatementBegin
CREATE FUNCTION webhooks.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit entries are append-only';
END $$;
-- +goose StatementEnd
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE ON webhooks.audit_entries
  FOR EACH ROW EXECUTE FUNCTION webhooks.audit_append_only();

-- +goose Down
DROP TABLE webhooks.audit_settings;
DROP TABLE webhooks.audit_heads;
DROP TABLE webhooks.audit_entries;
DROP FUNCTION webhooks.audit_append_only();
