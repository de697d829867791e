-- +goose Up
-- Claims a tenant marks sensitive (TenantSettings.sensitive_claims) are not kept
-- in identities.claims: each value is sealed here (pkg/keyring, under the
-- identity's own data key, bound to the identity and the claim name through
-- row_ref), so the database, its backups and the events never hold it in plain
-- text, and erasing the identity (destroying its key) leaves it unreadable.
-- row_ref is the row's key for the keyring's re-encryption job, which visits rows
-- by a single unique column; its value "<identity_id>/<name>" is what the sealed
-- value is bound to.
CREATE TABLE identity.sensitive_claims (
  tenant_id   uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  identity_id uuid NOT NULL REFERENCES identity.identities (id) ON DELETE CASCADE,
  name        text NOT NULL CHECK (name <> '' AND length(name) <= 256),
  row_ref     text GENERATED ALWAYS AS (identity_id::text || '/' || name) STORED UNIQUE,
  -- The claim's JSON value, sealed.
  sealed      bytea NOT NULL,
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (identity_id, name)
);
CREATE INDEX sensitive_claims_tenant ON identity.sensitive_claims (tenant_id, row_ref);

ALTER TABLE identity.sensitive_claims ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.sensitive_claims FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.sensitive_claims
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- The roles an SSO provider's roles claim may give (SsoProvider.allowed_roles);
-- empty means any role ranking no higher than the default role, except admin.
ALTER TABLE identity.sso_providers ADD COLUMN allowed_roles text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE identity.sso_providers DROP COLUMN allowed_roles;
DROP TABLE identity.sensitive_claims;
