-- +goose Up
-- Erasure receipts (ErasureService): what an erasure removed, when and on whose
-- request, without the personal data it removed. The subject is named only by its
-- id. tenant_id has no foreign key to identity.tenants: a tenant's erasure deletes
-- the tenant, and its receipt must outlive it.
CREATE TABLE identity.erasures (
  id               uuid PRIMARY KEY,
  tenant_id        uuid NOT NULL,
  subject_kind     text NOT NULL CHECK (subject_kind IN ('identity', 'tenant')),
  subject_id       uuid NOT NULL,
  requested_by     text NOT NULL,
  reason           text NOT NULL DEFAULT '',
  state            text NOT NULL CHECK (state IN ('in_progress', 'completed')),
  -- [{"service", "kind", "count"}], in the order the services reported.
  counts           jsonb NOT NULL DEFAULT '[]',
  -- Services that have not reported their part yet.
  pending_services text[] NOT NULL DEFAULT '{}',
  requested_at     timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz
);
-- A subject is erased once: asking again finds this receipt.
CREATE UNIQUE INDEX erasures_subject ON identity.erasures (tenant_id, subject_kind, subject_id);
-- Listing newest first (ids are UUIDv7).
CREATE INDEX erasures_tenant_id ON identity.erasures (tenant_id, id DESC);

ALTER TABLE identity.erasures ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.erasures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.erasures
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);
-- A tenant's receipt outlives the tenant and is the operator's to read: a
-- transaction bound to no tenant (the operator's lookup) sees tenant receipts, and
-- only those.
CREATE POLICY tenant_receipts ON identity.erasures FOR SELECT
  USING (subject_kind = 'tenant' AND NULLIF(current_setting('manushya.tenant_id', true), '') IS NULL);

-- +goose Down
DROP TABLE identity.erasures;
