-- +goose Up
-- API keys: who made a key, which key a reroll replaced, why it was revoked.
ALTER TABLE identity.api_keys
  ADD COLUMN update_time         timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN creator_identity_id uuid,
  ADD COLUMN rerolled_from_id    uuid,
  ADD COLUMN revoke_reason       text NOT NULL DEFAULT '';
-- Listing one identity's keys newest first.
CREATE INDEX api_keys_tenant_id ON identity.api_keys (tenant_id, id DESC);

-- TOTP enrolment of an identity. The secret is sealed (AES-256-GCM, pkg/secretbox)
-- with the identity id as associated data; enable_time is NULL while the setup waits
-- for VerifyMfa. last_step is the last time step a code was accepted for, so a code
-- cannot be replayed.
CREATE TABLE identity.mfa_totp (
  tenant_id     uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  identity_id   uuid PRIMARY KEY REFERENCES identity.identities (id) ON DELETE CASCADE,
  secret_sealed bytea NOT NULL,
  enable_time   timestamptz,
  setup_expire_time timestamptz NOT NULL,
  last_step     bigint NOT NULL DEFAULT 0,
  create_time   timestamptz NOT NULL DEFAULT now()
);

-- Single-use backup codes, stored as keyed hashes.
CREATE TABLE identity.mfa_backup_codes (
  tenant_id   uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  identity_id uuid NOT NULL REFERENCES identity.identities (id) ON DELETE CASCADE,
  code_hash   bytea NOT NULL,
  use_time    timestamptz,
  PRIMARY KEY (identity_id, code_hash)
);

CREATE TABLE identity.invitations (
  id                   uuid PRIMARY KEY,
  tenant_id            uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  email                text NOT NULL,
  role                 text NOT NULL,
  claims               jsonb NOT NULL DEFAULT '{}',
  message              text NOT NULL DEFAULT '',
  inviter_identity_id  uuid,
  accepted_identity_id uuid,
  token_prefix         text NOT NULL UNIQUE,
  token_hash           bytea NOT NULL,
  create_time          timestamptz NOT NULL DEFAULT now(),
  expire_time          timestamptz NOT NULL,
  accept_time          timestamptz,
  revoke_time          timestamptz,
  last_send_time       timestamptz,
  send_count           integer NOT NULL DEFAULT 0
);
CREATE INDEX invitations_tenant_id ON identity.invitations (tenant_id, id DESC);
CREATE INDEX invitations_email ON identity.invitations (tenant_id, lower(email));

-- Which tenant an invitation token prefix belongs to: accepting starts from the token
-- alone, before any tenant is known. Like api_key_prefixes it holds no secret; the
-- token's hash stays behind RLS. Resending replaces the row.
CREATE TABLE identity.invitation_token_prefixes (
  prefix    text PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE
);

ALTER TABLE identity.mfa_totp ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.mfa_totp FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.mfa_totp
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE identity.mfa_backup_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.mfa_backup_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.mfa_backup_codes
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE identity.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.invitations
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- +goose Down
DROP TABLE identity.invitation_token_prefixes;
DROP TABLE identity.invitations;
DROP TABLE identity.mfa_backup_codes;
DROP TABLE identity.mfa_totp;
DROP INDEX identity.api_keys_tenant_id;
ALTER TABLE identity.api_keys
  DROP COLUMN revoke_reason,
  DROP COLUMN rerolled_from_id,
  DROP COLUMN creator_identity_id,
  DROP COLUMN update_time;
