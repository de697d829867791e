-- Invitations (InvitationService).

-- name: CreateInvitation :one
INSERT INTO identity.invitations (id, tenant_id, email, role, claims, message, inviter_identity_id,
  token_prefix, token_hash, expire_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: CreateInvitationTokenPrefix :exec
INSERT INTO identity.invitation_token_prefixes (prefix, tenant_id) VALUES ($1, $2);

-- name: DeleteInvitationTokenPrefix :exec
DELETE FROM identity.invitation_token_prefixes WHERE prefix = $1;

-- name: TenantOfInvitationPrefix :one
SELECT tenant_id FROM identity.invitation_token_prefixes WHERE prefix = $1;

-- name: GetInvitation :one
SELECT * FROM identity.invitations WHERE id = $1;

-- name: GetInvitationForUpdate :one
SELECT * FROM identity.invitations WHERE id = $1 FOR UPDATE;

-- name: GetInvitationByPrefixForUpdate :one
SELECT * FROM identity.invitations WHERE token_prefix = $1 FOR UPDATE;

-- name: PendingInvitationExists :one
SELECT EXISTS (
  SELECT 1 FROM identity.invitations
  WHERE lower(email) = lower($1) AND accept_time IS NULL AND revoke_time IS NULL AND expire_time > now()
);

-- name: ListInvitations :many
SELECT * FROM identity.invitations
WHERE (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
  AND (sqlc.narg(email)::text IS NULL OR lower(email) = lower(sqlc.narg(email)::text))
  AND (sqlc.narg(state)::text IS NULL
       OR (sqlc.narg(state)::text = 'pending' AND accept_time IS NULL AND revoke_time IS NULL AND expire_time > now())
       OR (sqlc.narg(state)::text = 'accepted' AND accept_time IS NOT NULL)
       OR (sqlc.narg(state)::text = 'revoked' AND accept_time IS NULL AND revoke_time IS NOT NULL)
       OR (sqlc.narg(state)::text = 'expired' AND accept_time IS NULL AND revoke_time IS NULL AND expire_time <= now()))
ORDER BY id DESC
LIMIT sqlc.arg(page_limit);

-- name: RevokeInvitation :one
UPDATE identity.invitations SET revoke_time = now()
WHERE id = $1 AND revoke_time IS NULL AND accept_time IS NULL
RETURNING *;

-- name: ReissueInvitationToken :one
UPDATE identity.invitations SET token_prefix = $2, token_hash = $3, expire_time = $4
WHERE id = $1
RETURNING *;

-- name: MarkInvitationSent :one
UPDATE identity.invitations SET last_send_time = now(), send_count = send_count + 1
WHERE id = $1
RETURNING *;

-- name: AcceptInvitation :one
UPDATE identity.invitations SET accept_time = now(), accepted_identity_id = $2
WHERE id = $1 AND accept_time IS NULL AND revoke_time IS NULL
RETURNING *;
