-- +goose Up
-- Tenants are the registry of organisations. Not tenant-scoped itself: the operator
-- lists them and logins resolve a slug to an id before any tenant is known.
CREATE TABLE identity.tenants (
  id          uuid PRIMARY KEY,
  slug        text NOT NULL UNIQUE,
  name        text NOT NULL,
  settings    jsonb NOT NULL DEFAULT '{}',
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identity.identities (
  id            uuid PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  external_id   text NOT NULL,
  kind          text NOT NULL CHECK (kind IN ('user', 'agent', 'service')),
  role          text NOT NULL,
  roles         text[] NOT NULL DEFAULT '{}',
  claims        jsonb NOT NULL DEFAULT '{}',
  is_active     boolean NOT NULL DEFAULT true,
  password_hash text,
  create_time   timestamptz NOT NULL DEFAULT now(),
  update_time   timestamptz NOT NULL DEFAULT now(),
  delete_time   timestamptz
);
-- external_id is unique among live identities; a soft-deleted one frees its name.
CREATE UNIQUE INDEX identities_external_id ON identity.identities (tenant_id, external_id) WHERE delete_time IS NULL;
-- Keyset paging: ids are UUIDv7, so id order is creation order.
CREATE INDEX identities_tenant_id ON identity.identities (tenant_id, id DESC);

CREATE TABLE identity.api_keys (
  id             uuid PRIMARY KEY,
  tenant_id      uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  identity_id    uuid NOT NULL REFERENCES identity.identities (id) ON DELETE CASCADE,
  name           text NOT NULL,
  environment    text NOT NULL,
  prefix         text NOT NULL UNIQUE,
  key_hash       bytea NOT NULL,
  scopes         text[] NOT NULL DEFAULT '{}',
  create_time    timestamptz NOT NULL DEFAULT now(),
  expire_time    timestamptz,
  last_used_time timestamptz,
  revoke_time    timestamptz
);
CREATE INDEX api_keys_identity ON identity.api_keys (tenant_id, identity_id);

-- Which tenant a key prefix belongs to. Verification starts from the key alone, before
-- any tenant is known; this table answers that one question and holds no secret, so
-- it needs no row-level security. The key's hash stays behind RLS in api_keys.
CREATE TABLE identity.api_key_prefixes (
  prefix    text PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE
);

-- Results of creates made with an idempotency key, replayed on retry.
CREATE TABLE identity.idempotency_keys (
  tenant_id    uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  key          text NOT NULL,
  method       text NOT NULL,
  request_hash bytea NOT NULL,
  response     bytea NOT NULL,
  create_time  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, method, key)
);

-- Row-level security: a transaction sees only the tenant it set (pkg/postgres
-- InTenantTx). FORCE applies it to the table owner too.
ALTER TABLE identity.identities ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.identities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.identities
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE identity.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.api_keys
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE identity.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.idempotency_keys
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Transactional outbox (pkg/outbox): written in the same transaction as the change,
-- read and emptied by the relay. Holds no tenant-readable data, so no RLS.
CREATE TABLE identity.outbox (
  seq        bigserial PRIMARY KEY,
  event_id   uuid NOT NULL,
  subject    text NOT NULL,
  payload    bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE identity.outbox;
DROP TABLE identity.idempotency_keys;
DROP TABLE identity.api_key_prefixes;
DROP TABLE identity.api_keys;
DROP TABLE identity.identities;
DROP TABLE identity.tenants;
