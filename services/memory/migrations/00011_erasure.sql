-- +goose Up
-- The memory service's part of each erasure (pkg/erasure): what it removed so far
-- and whether it has reported. Memories go in batches, each its own transaction,
-- so the counts add up across batches and across a restart in the middle; the
-- report is written once, with report_time, so a redelivered identity.erased
-- reports nothing twice. Ids and counts only.
CREATE TABLE memory.erasures (
  erasure_id  uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL,
  memories    bigint NOT NULL DEFAULT 0,
  versions    bigint NOT NULL DEFAULT 0,
  create_time timestamptz NOT NULL DEFAULT now(),
  report_time timestamptz
);
ALTER TABLE memory.erasures ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.erasures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory.erasures
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- +goose Down
DROP TABLE memory.erasures;
