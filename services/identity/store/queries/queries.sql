-- name: CreateTenant :one
INSERT INTO identity.tenants (id, slug, name, settings)
VALUES ($1, $2, $3, $4)
RETURNING *;

-- name: GetTenant :one
SELECT * FROM identity.tenants WHERE id = $1;

-- name: GetTenantForUpdate :one
SELECT * FROM identity.tenants WHERE id = $1 FOR UPDATE;

-- name: UpdateTenant :one
UPDATE identity.tenants SET name = $2, settings = $3, update_time = now()
WHERE id = $1
RETURNING *;

-- name: GetTenantBySlug :one
SELECT * FROM identity.tenants WHERE slug = $1;

-- name: ListTenants :many
SELECT * FROM identity.tenants
WHERE sqlc.narg(after_id)::uuid IS NULL OR id > sqlc.narg(after_id)::uuid
ORDER BY id
LIMIT sqlc.arg(page_limit);

-- name: CreateIdentity :one
INSERT INTO identity.identities (id, tenant_id, external_id, kind, role, roles, claims, password_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: GetIdentity :one
SELECT * FROM identity.identities
WHERE id = $1 AND (delete_time IS NULL OR sqlc.arg(include_deleted)::boolean);

-- name: ListIdentities :many
SELECT * FROM identity.identities
WHERE (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
  AND (sqlc.narg(role)::text IS NULL OR role = sqlc.narg(role)::text)
  AND (sqlc.narg(kind)::text IS NULL OR kind = sqlc.narg(kind)::text)
  AND (sqlc.narg(external_id)::text IS NULL OR external_id = sqlc.narg(external_id)::text)
  AND (sqlc.narg(created_after)::timestamptz IS NULL OR create_time >= sqlc.narg(created_after)::timestamptz)
  AND (sqlc.narg(created_before)::timestamptz IS NULL OR create_time < sqlc.narg(created_before)::timestamptz)
  AND (delete_time IS NULL OR sqlc.arg(include_deleted)::boolean)
ORDER BY id DESC
LIMIT sqlc.arg(page_limit);

-- name: GetIdentityForUpdate :one
SELECT * FROM identity.identities
WHERE id = $1 AND delete_time IS NULL
FOR UPDATE;

-- name: LockIdentity :one
-- Locks an identity, deleted or not, against concurrent changes and against new
-- sessions and keys (their inserts wait on the row).
SELECT * FROM identity.identities WHERE id = $1 FOR UPDATE;

-- name: UpdateIdentity :one
-- Changes the fields whose set_* flag is true. Claims are merged into the stored
-- ones (top-level keys, jsonb ||) unless replace_claims.
UPDATE identity.identities
SET external_id = CASE WHEN sqlc.arg(set_external_id)::boolean THEN sqlc.arg(external_id)::text ELSE external_id END,
    role = CASE WHEN sqlc.arg(set_role)::boolean THEN sqlc.arg(role)::text ELSE role END,
    roles = CASE WHEN sqlc.arg(set_roles)::boolean THEN sqlc.arg(roles)::text[] ELSE roles END,
    claims = CASE
      WHEN NOT sqlc.arg(set_claims)::boolean THEN claims
      WHEN sqlc.arg(replace_claims)::boolean THEN sqlc.arg(claims)::jsonb
      ELSE claims || sqlc.arg(claims)::jsonb
    END,
    is_active = CASE WHEN sqlc.arg(set_is_active)::boolean THEN sqlc.arg(is_active)::boolean ELSE is_active END,
    update_time = now()
WHERE id = sqlc.arg(id) AND delete_time IS NULL
RETURNING *;

-- name: ListIdentityAPIKeys :many
-- Every key of an identity, revoked or not: what the verification caches may hold.
SELECT * FROM identity.api_keys WHERE identity_id = $1;

-- name: SoftDeleteIdentity :one
UPDATE identity.identities
SET delete_time = now(), is_active = false, update_time = now()
WHERE id = $1 AND delete_time IS NULL
RETURNING *;

-- name: HardDeleteIdentity :one
DELETE FROM identity.identities WHERE id = $1 RETURNING *;

-- name: CreateAPIKey :one
INSERT INTO identity.api_keys (id, tenant_id, identity_id, name, environment, prefix, key_hash, scopes, expire_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: CreateAPIKeyPrefix :exec
INSERT INTO identity.api_key_prefixes (prefix, tenant_id) VALUES ($1, $2);

-- name: TenantOfAPIKeyPrefix :one
SELECT tenant_id FROM identity.api_key_prefixes WHERE prefix = $1;

-- name: GetAPIKeyByPrefix :one
SELECT k.*, i.external_id, i.kind, i.role, i.roles, i.is_active, i.delete_time AS identity_delete_time
FROM identity.api_keys k
JOIN identity.identities i ON i.id = k.identity_id
WHERE k.prefix = $1;

-- name: TouchAPIKey :exec
UPDATE identity.api_keys SET last_used_time = now()
WHERE id = $1 AND (last_used_time IS NULL OR last_used_time < now() - interval '1 minute');

-- name: GetIdempotentResponse :one
SELECT request_hash, response FROM identity.idempotency_keys
WHERE tenant_id = $1 AND method = $2 AND key = $3;

-- name: SaveIdempotentResponse :exec
INSERT INTO identity.idempotency_keys (tenant_id, method, key, request_hash, response)
VALUES ($1, $2, $3, $4, $5);

-- name: RestoreIdentity :one
-- Brings a soft-deleted identity back, active. Fails on the unique index when a
-- live identity took its external_id meanwhile.
UPDATE identity.identities
SET delete_time = NULL, is_active = true, update_time = now()
WHERE id = $1 AND delete_time IS NOT NULL
RETURNING *;
