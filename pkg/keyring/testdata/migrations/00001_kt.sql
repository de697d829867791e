-- +goose Up
-- Tables the keyring tests seal into: a tenant table with an identity column, and a
-- system table keyed by text.
CREATE TABLE kt.secrets (
  id          uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL,
  identity_id uuid NOT NULL,
  secret      bytea
);
ALTER TABLE kt.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE kt.secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kt.secrets
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

CREATE TABLE kt.system_secrets (
  name   text PRIMARY KEY,
  secret bytea NOT NULL
);

-- +goose Down
DROP TABLE kt.system_secrets;
DROP TABLE kt.secrets;
