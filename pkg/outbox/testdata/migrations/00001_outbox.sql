-- +goose Up
-- A tenant table, so tests write events in the same RLS-scoped transaction as a
-- change, the way services do.
CREATE TABLE relaytest.notes (
    id        uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    body      text NOT NULL
);

ALTER TABLE relaytest.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE relaytest.notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON relaytest.notes
    USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- The outbox DDL every service's first migration carries (see package doc).
CREATE TABLE relaytest.outbox (
  seq        bigserial PRIMARY KEY,
  event_id   uuid NOT NULL,
  subject    text NOT NULL,
  payload    bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE relaytest.outbox;
DROP TABLE relaytest.notes;
