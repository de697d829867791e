-- Single sign-on (SsoService): providers and the links of provider accounts to
-- identities.

-- name: CreateSsoProvider :one
INSERT INTO identity.sso_providers (id, tenant_id, name, display_name, preset, issuer_url, client_id,
  client_secret_sealed, scopes, claim_external_id, claim_email, claim_name, claim_roles,
  allowed_email_domains, jit_create, default_role, redirect_urls, allow_unverified_email, allowed_roles)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
RETURNING *;

-- name: GetSsoProvider :one
SELECT * FROM identity.sso_providers WHERE id = $1;

-- name: GetSsoProviderForUpdate :one
SELECT * FROM identity.sso_providers WHERE id = $1 FOR UPDATE;

-- name: GetSsoProviderByName :one
SELECT * FROM identity.sso_providers WHERE name = $1;

-- name: ListSsoProviders :many
-- Ordered by name; after_name is the keyset cursor.
SELECT * FROM identity.sso_providers
WHERE sqlc.narg(after_name)::text IS NULL OR name > sqlc.narg(after_name)::text
ORDER BY name
LIMIT sqlc.arg(page_limit);

-- name: ListActiveSsoProviderNames :many
SELECT name FROM identity.sso_providers WHERE is_active ORDER BY name;

-- name: UpdateSsoProvider :one
UPDATE identity.sso_providers
SET name = $2, display_name = $3, issuer_url = $4, client_id = $5, client_secret_sealed = $6,
    scopes = $7, claim_external_id = $8, claim_email = $9, claim_name = $10, claim_roles = $11,
    allowed_email_domains = $12, jit_create = $13, default_role = $14, redirect_urls = $15,
    allow_unverified_email = $16, is_active = $17, allowed_roles = $18, update_time = now()
WHERE id = $1
RETURNING *;

-- name: DeleteSsoProvider :one
DELETE FROM identity.sso_providers WHERE id = $1 RETURNING *;

-- name: GetSsoLink :one
SELECT * FROM identity.sso_links WHERE provider_id = $1 AND subject = $2;

-- name: CreateSsoLink :exec
INSERT INTO identity.sso_links (tenant_id, provider_id, subject, identity_id, email)
VALUES ($1, $2, $3, $4, $5);

-- name: TouchSsoLink :exec
UPDATE identity.sso_links SET last_login_time = now(), email = $3
WHERE provider_id = $1 AND subject = $2;

-- name: FindIdentityByEmail :many
-- Live identities whose external_id is the email address, compared without case.
-- More than one row means the address is ambiguous and links nothing.
SELECT * FROM identity.identities
WHERE lower(external_id) = lower(sqlc.arg(email)::text) AND delete_time IS NULL
ORDER BY id
LIMIT 2;
