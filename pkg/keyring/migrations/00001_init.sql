-- +goose Up
-- Data keys (DEKs) of the envelope encryption in pkg/keyring, shared by every
-- service so that destroying one scope's keys makes its values unreadable wherever
-- they are stored. A scope is the system (tenant_id and identity_id both zero: secrets
-- that belong to no tenant, such as token-signing keys), a tenant (identity_id zero)
-- or one identity of a tenant. Each row is one key version; key_id is the Tink key
-- id every ciphertext carries, so old versions keep opening what they sealed while
-- new writes use the primary.
--
-- This table holds ids, states and times only, no key material, so the background
-- re-encryption job can find keys across tenants without row-level security (like
-- the outbox and the work queues); the wrapped keys are in dek_material, under RLS.
CREATE TABLE keyring.deks (
  tenant_id    uuid NOT NULL,
  identity_id  uuid NOT NULL,
  key_id       bigint NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
  -- primary seals new values; retired only opens, until no row uses it; destroyed
  -- was retired and unused; shredded was destroyed on purpose (Destroy) and the
  -- scope accepts no new key. key_id 0 is the tombstone of a scope shredded before
  -- it had a key.
  state        text NOT NULL CHECK (state IN ('primary', 'retired', 'destroyed', 'shredded')),
  -- The key-encryption key the material is wrapped under (pkg/keyring KMS.KeyID).
  kek_id       text NOT NULL,
  create_time  timestamptz NOT NULL DEFAULT now(),
  retire_time  timestamptz,
  destroy_time timestamptz,
  PRIMARY KEY (tenant_id, identity_id, key_id)
);
CREATE UNIQUE INDEX deks_one_primary ON keyring.deks (tenant_id, identity_id) WHERE state = 'primary';
CREATE INDEX deks_retired ON keyring.deks (retire_time) WHERE state = 'retired';
CREATE INDEX deks_live_kek ON keyring.deks (kek_id) WHERE state IN ('primary', 'retired');

-- The key material: a one-key Tink keyset (AES-256-GCM) encrypted under the KEK with
-- the scope and key id as associated data. Destroying a key deletes its row.
CREATE TABLE keyring.dek_material (
  tenant_id   uuid NOT NULL,
  identity_id uuid NOT NULL,
  key_id      bigint NOT NULL,
  wrapped     bytea NOT NULL,
  PRIMARY KEY (tenant_id, identity_id, key_id),
  FOREIGN KEY (tenant_id, identity_id, key_id) REFERENCES keyring.deks ON DELETE CASCADE
);

-- Tenant isolation as everywhere, plus the system scope, readable only by a
-- transaction bound to no tenant.
ALTER TABLE keyring.dek_material ENABLE ROW LEVEL SECURITY;
ALTER TABLE keyring.dek_material FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON keyring.dek_material
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid
         OR (tenant_id = '00000000-0000-0000-0000-000000000000'
             AND NULLIF(current_setting('manushya.tenant_id', true), '') IS NULL))
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid
         OR (tenant_id = '00000000-0000-0000-0000-000000000000'
             AND NULLIF(current_setting('manushya.tenant_id', true), '') IS NULL));

-- Every sealed column of every service ("schema.table.column"), recorded before the
-- first value is sealed into it, with the last complete re-encryption pass over it.
-- A retired key is destroyed only when every field has had a complete pass that
-- started after the key stopped sealing and found no row still under it.
CREATE TABLE keyring.fields (
  field            text PRIMARY KEY,
  register_time    timestamptz NOT NULL DEFAULT now(),
  pass_start_time  timestamptz,
  pass_end_time    timestamptz,
  rows_scanned     bigint NOT NULL DEFAULT 0,
  rows_current     bigint NOT NULL DEFAULT 0,
  rows_resealed    bigint NOT NULL DEFAULT 0,
  rows_failed      bigint NOT NULL DEFAULT 0
);

-- Keys the last pass over a field found rows under that it could not re-seal (for
-- example sealed under a key-encryption key this deployment no longer has): they
-- keep those keys from being destroyed.
CREATE TABLE keyring.holds (
  field       text NOT NULL REFERENCES keyring.fields ON DELETE CASCADE,
  tenant_id   uuid NOT NULL,
  identity_id uuid NOT NULL,
  key_id      bigint NOT NULL,
  row_count   bigint NOT NULL,
  PRIMARY KEY (field, tenant_id, identity_id, key_id)
);

-- +goose Down
DROP TABLE keyring.holds;
DROP TABLE keyring.fields;
DROP TABLE keyring.dek_material;
DROP TABLE keyring.deks;
