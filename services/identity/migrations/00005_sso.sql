-- +goose Up
-- OpenID Connect providers a tenant's people sign in through (SsoService). The
-- client secret is sealed by the identity service's Sealer with the provider id as
-- associated data, so a sealed secret copied to another provider row does not open.
-- Claim mapping columns hold claim names; empty means the documented default.
CREATE TABLE identity.sso_providers (
  id                     uuid PRIMARY KEY,
  tenant_id              uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  name                   text NOT NULL,
  display_name           text NOT NULL DEFAULT '',
  preset                 text NOT NULL DEFAULT 'generic' CHECK (preset IN ('generic', 'google')),
  issuer_url             text NOT NULL,
  client_id              text NOT NULL,
  client_secret_sealed   bytea,
  scopes                 text[] NOT NULL DEFAULT '{}',
  claim_external_id      text NOT NULL DEFAULT '',
  claim_email            text NOT NULL DEFAULT '',
  claim_name             text NOT NULL DEFAULT '',
  claim_roles            text NOT NULL DEFAULT '',
  allowed_email_domains  text[] NOT NULL DEFAULT '{}',
  jit_create             boolean NOT NULL DEFAULT false,
  default_role           text NOT NULL DEFAULT 'user',
  redirect_urls          text[] NOT NULL DEFAULT '{}',
  allow_unverified_email boolean NOT NULL DEFAULT false,
  is_active              boolean NOT NULL DEFAULT true,
  create_time            timestamptz NOT NULL DEFAULT now(),
  update_time            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name)
);

-- Which provider account (issuer subject) is which identity. A sign-in finds its
-- identity here first; an identity is linked when it is created through SSO, when
-- an invitation is accepted through SSO, or when the provider vouches for an email
-- address (email_verified) equal to the identity's external_id. Deleting the
-- provider drops its links; the identities stay.
CREATE TABLE identity.sso_links (
  tenant_id     uuid NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
  provider_id   uuid NOT NULL REFERENCES identity.sso_providers (id) ON DELETE CASCADE,
  subject       text NOT NULL,
  identity_id   uuid NOT NULL REFERENCES identity.identities (id) ON DELETE CASCADE,
  email         text NOT NULL DEFAULT '',
  create_time   timestamptz NOT NULL DEFAULT now(),
  last_login_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider_id, subject)
);
CREATE INDEX sso_links_identity ON identity.sso_links (identity_id);

ALTER TABLE identity.sso_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.sso_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.sso_providers
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE identity.sso_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.sso_links FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.sso_links
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- +goose Down
DROP TABLE identity.sso_links;
DROP TABLE identity.sso_providers;
