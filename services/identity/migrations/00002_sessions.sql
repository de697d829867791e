-- +goose Up
-- Keys that sign access tokens. One issuer serves every tenant, so this table is not
-- tenant-scoped. The private key is sealed (AES-256-GCM under the key-encryption key
-- from the configuration, the kid as associated data); the public key is published
-- as JWKS. A key signs from activate_time until it is retired, and verifies until
-- expire_time, which is past the last token it signed.
CREATE TABLE identity.signing_keys (
  kid           text PRIMARY KEY,
  algorithm     text NOT NULL CHECK (algorithm IN ('EdDSA')),
  public_key    bytea NOT NULL,
  private_key   bytea NOT NULL,
  create_time   timestamptz NOT NULL DEFAULT now(),
  activate_time timestamptz NOT NULL DEFAULT now(),
  retire_time   timestamptz,
  expire_time   timestamptz
);

-- One sign-in of an identity on a device.
CREATE TABLE identity.sessions (
  id             uuid PRIMARY KEY,
  tenant_id      uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  identity_id    uuid NOT NULL REFERENCES identity.identities (id) ON DELETE CASCADE,
  auth_method    text NOT NULL,
  user_agent     text NOT NULL DEFAULT '',
  client_ip      text NOT NULL DEFAULT '',
  device_name    text NOT NULL DEFAULT '',
  create_time    timestamptz NOT NULL DEFAULT now(),
  last_seen_time timestamptz NOT NULL DEFAULT now(),
  expire_time    timestamptz NOT NULL,
  revoke_time    timestamptz,
  revoke_reason  text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_identity ON identity.sessions (tenant_id, identity_id, create_time);
CREATE INDEX sessions_expire ON identity.sessions (expire_time);

-- The refresh tokens of a session (its family), stored as SHA-256 of the token: they
-- are 256-bit random values, so a fast hash is enough. A spent token keeps its
-- successor sealed for the grace window, so a client that raced itself gets the same
-- new token instead of tripping reuse detection.
CREATE TABLE identity.refresh_tokens (
  token_hash  bytea PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  session_id  uuid NOT NULL REFERENCES identity.sessions (id) ON DELETE CASCADE,
  create_time timestamptz NOT NULL DEFAULT now(),
  spend_time  timestamptz,
  successor   bytea
);
CREATE INDEX refresh_tokens_session ON identity.refresh_tokens (session_id);

-- Which tenant a refresh token belongs to. A refresh starts from the token alone,
-- before any tenant is known; this answers that one question from the token's hash
-- and holds no secret, so it needs no row-level security.
CREATE TABLE identity.refresh_token_tenants (
  token_hash bytea PRIMARY KEY REFERENCES identity.refresh_tokens (token_hash) ON DELETE CASCADE,
  tenant_id  uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE
);

-- Revoked sessions whose access tokens may still be unexpired. Verifiers load it at
-- start and then follow session.revoked events; it holds only ids, so it is not
-- tenant-scoped. Rows older than the longest access token are swept.
CREATE TABLE identity.revoked_sessions (
  session_id  uuid PRIMARY KEY,
  until_time  timestamptz NOT NULL
);

ALTER TABLE identity.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.sessions
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE identity.refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.refresh_tokens
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- +goose Down
DROP TABLE identity.revoked_sessions;
DROP TABLE identity.refresh_token_tenants;
DROP TABLE identity.refresh_tokens;
DROP TABLE identity.sessions;
DROP TABLE identity.signing_keys;
