-- Signing keys, sessions, refresh tokens and logins (tokens and sessions).

-- name: LockSigningKeys :exec
-- Serialises key creation and rotation between replicas for one transaction.
SELECT pg_advisory_xact_lock(7308332015);

-- name: ListSigningKeys :many
SELECT * FROM identity.signing_keys
WHERE expire_time IS NULL OR expire_time > now()
ORDER BY activate_time DESC;

-- name: CreateSigningKey :one
INSERT INTO identity.signing_keys (kid, algorithm, public_key, private_key, activate_time)
VALUES ($1, $2, $3, $4, $5)
RETURNING *;

-- name: RetireSigningKeys :exec
-- Every other key stops signing when the new one activates and verifies until the
-- tokens it signed have expired.
UPDATE identity.signing_keys
SET retire_time = sqlc.arg(retire_at)::timestamptz, expire_time = sqlc.arg(verify_until)::timestamptz
WHERE kid <> sqlc.arg(kid) AND retire_time IS NULL;

-- name: LoginIdentity :one
SELECT * FROM identity.identities
WHERE external_id = $1 AND delete_time IS NULL;

-- name: SetIdentityPasswordHash :exec
UPDATE identity.identities SET password_hash = $2, update_time = now()
WHERE id = $1 AND delete_time IS NULL;

-- name: CreateSession :one
INSERT INTO identity.sessions (id, tenant_id, identity_id, auth_method, user_agent, client_ip, device_name, expire_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: GetSession :one
SELECT * FROM identity.sessions WHERE id = $1;

-- name: ListSessions :many
SELECT * FROM identity.sessions
WHERE (sqlc.narg(identity_id)::uuid IS NULL OR identity_id = sqlc.narg(identity_id)::uuid)
  AND (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
  AND (sqlc.arg(include_revoked)::boolean OR (revoke_time IS NULL AND expire_time > now()))
ORDER BY id DESC
LIMIT sqlc.arg(page_limit);

-- name: RevokeSession :one
UPDATE identity.sessions SET revoke_time = now(), revoke_reason = $2
WHERE id = $1 AND revoke_time IS NULL
RETURNING *;

-- name: RevokeIdentitySessions :many
-- Revokes the live sessions of an identity, except one when except_id is set.
UPDATE identity.sessions SET revoke_time = now(), revoke_reason = sqlc.arg(reason)
WHERE identity_id = sqlc.arg(identity_id) AND revoke_time IS NULL AND expire_time > now()
  AND (sqlc.narg(except_id)::uuid IS NULL OR id <> sqlc.narg(except_id)::uuid)
RETURNING *;

-- name: RevokeSessionsOverCap :many
-- Keeps the newest keep live sessions of an identity and revokes the rest.
UPDATE identity.sessions SET revoke_time = now(), revoke_reason = sqlc.arg(reason)
WHERE id IN (
  SELECT s.id FROM identity.sessions s
  WHERE s.identity_id = sqlc.arg(identity_id) AND s.revoke_time IS NULL AND s.expire_time > now()
  ORDER BY s.create_time DESC, s.id DESC
  OFFSET sqlc.arg(keep)
)
RETURNING *;

-- name: TouchSession :exec
UPDATE identity.sessions SET last_seen_time = now(), client_ip = $2
WHERE id = $1 AND (last_seen_time < now() - interval '1 minute' OR client_ip <> $2);

-- name: DeleteDeadSessions :one
-- Deletes sessions that expired, or were revoked, before cutoff.
WITH gone AS (
  DELETE FROM identity.sessions
  WHERE (expire_time < sqlc.arg(cutoff)::timestamptz OR revoke_time < sqlc.arg(cutoff)::timestamptz)
    AND NOT sqlc.arg(dry_run)::boolean
  RETURNING 1
)
SELECT (SELECT count(*) FROM gone)::bigint AS deleted,
       (SELECT count(*) FROM identity.sessions
        WHERE expire_time < sqlc.arg(cutoff)::timestamptz OR revoke_time < sqlc.arg(cutoff)::timestamptz)::bigint AS matching;

-- name: CreateRefreshToken :exec
INSERT INTO identity.refresh_tokens (token_hash, tenant_id, session_id) VALUES ($1, $2, $3);

-- name: CreateRefreshTokenTenant :exec
INSERT INTO identity.refresh_token_tenants (token_hash, tenant_id) VALUES ($1, $2);

-- name: TenantOfRefreshToken :one
SELECT tenant_id FROM identity.refresh_token_tenants WHERE token_hash = $1;

-- name: LockRefreshToken :one
-- The token with its session, locked so concurrent refreshes of one token queue.
SELECT r.token_hash, r.session_id, r.create_time, r.spend_time, r.successor,
       s.identity_id, s.expire_time AS session_expire_time, s.revoke_time AS session_revoke_time
FROM identity.refresh_tokens r
JOIN identity.sessions s ON s.id = r.session_id
WHERE r.token_hash = $1
FOR UPDATE OF r;

-- name: SpendRefreshToken :exec
UPDATE identity.refresh_tokens SET spend_time = now(), successor = $2 WHERE token_hash = $1;

-- name: ForgetRefreshSuccessors :exec
-- Drops sealed successors once their grace window has passed.
UPDATE identity.refresh_tokens SET successor = NULL
WHERE successor IS NOT NULL AND spend_time < sqlc.arg(before)::timestamptz;

-- name: AddRevokedSession :exec
INSERT INTO identity.revoked_sessions (session_id, until_time) VALUES ($1, $2)
ON CONFLICT (session_id) DO NOTHING;

-- name: ListRevokedSessions :many
SELECT session_id, until_time FROM identity.revoked_sessions WHERE until_time > now();

-- name: DeleteOldRevokedSessions :exec
DELETE FROM identity.revoked_sessions WHERE until_time < now();
