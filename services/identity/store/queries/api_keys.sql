-- API key management (ApiKeyService). Verification queries are in queries.sql.

-- name: GetAPIKey :one
SELECT * FROM identity.api_keys WHERE id = $1;

-- name: GetAPIKeyForUpdate :one
SELECT * FROM identity.api_keys WHERE id = $1 FOR UPDATE;

-- name: ListAPIKeys :many
SELECT * FROM identity.api_keys
WHERE (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
  AND (sqlc.narg(identity_id)::uuid IS NULL OR identity_id = sqlc.narg(identity_id)::uuid)
  AND (sqlc.narg(environment)::text IS NULL OR environment = sqlc.narg(environment)::text)
  AND (sqlc.arg(include_revoked)::boolean
       OR (revoke_time IS NULL AND (expire_time IS NULL OR expire_time > now())))
ORDER BY id DESC
LIMIT sqlc.arg(page_limit);

-- name: SetAPIKeyOrigin :exec
UPDATE identity.api_keys SET creator_identity_id = $2, rerolled_from_id = $3 WHERE id = $1;

-- name: UpdateAPIKey :one
UPDATE identity.api_keys SET name = $2, scopes = $3, update_time = now()
WHERE id = $1
RETURNING *;

-- name: RevokeAPIKey :one
UPDATE identity.api_keys SET revoke_time = now(), revoke_reason = $2, update_time = now()
WHERE id = $1 AND revoke_time IS NULL
RETURNING *;

-- name: EndAPIKeyAt :one
-- Shortens a key's life to end at the given time (the end of a reroll overlap).
UPDATE identity.api_keys
SET expire_time = LEAST(COALESCE(expire_time, sqlc.arg(end_time)::timestamptz), sqlc.arg(end_time)::timestamptz),
    update_time = now()
WHERE id = $1
RETURNING *;
