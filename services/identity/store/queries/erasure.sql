-- Erasure (ErasureService): receipts and the rows an identity's erasure removes
-- beyond the identity row and what cascades from it.

-- name: CreateErasure :one
INSERT INTO identity.erasures (id, tenant_id, subject_kind, subject_id, requested_by, reason, state, counts, pending_services)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: GetErasure :one
SELECT * FROM identity.erasures WHERE id = $1;

-- name: GetErasureOfSubject :one
SELECT * FROM identity.erasures WHERE subject_kind = $1 AND subject_id = $2;

-- name: ListErasures :many
SELECT * FROM identity.erasures
WHERE sqlc.narg(after_id)::uuid IS NULL OR id < sqlc.narg(after_id)::uuid
ORDER BY id DESC
LIMIT sqlc.arg(page_limit);

-- name: RecordErasureProgress :one
-- Adds one service's counts and takes it off the pending list; a service that is
-- not pending (a redelivered report) changes nothing and matches no row. The
-- receipt completes with the last pending service.
UPDATE identity.erasures
SET counts = counts || sqlc.arg(counts)::jsonb,
    pending_services = array_remove(pending_services, sqlc.arg(service)::text),
    state = CASE WHEN cardinality(array_remove(pending_services, sqlc.arg(service)::text)) = 0 THEN 'completed' ELSE state END,
    completed_at = CASE WHEN cardinality(array_remove(pending_services, sqlc.arg(service)::text)) = 0 THEN now() ELSE completed_at END
WHERE id = sqlc.arg(id) AND sqlc.arg(service)::text = ANY (pending_services)
RETURNING *;

-- name: CountIdentityErasable :one
-- What an identity's erasure removes from this schema, counted before it goes.
SELECT
  (SELECT count(*) FROM identity.sessions s WHERE s.identity_id = sqlc.arg(id)::uuid)::bigint AS sessions,
  (SELECT count(*) FROM identity.refresh_tokens r JOIN identity.sessions s ON s.id = r.session_id
     WHERE s.identity_id = sqlc.arg(id)::uuid)::bigint AS refresh_tokens,
  (SELECT count(*) FROM identity.api_keys k WHERE k.identity_id = sqlc.arg(id)::uuid)::bigint AS api_keys,
  (SELECT count(*) FROM identity.mfa_totp m WHERE m.identity_id = sqlc.arg(id)::uuid)::bigint AS mfa_factors,
  (SELECT count(*) FROM identity.mfa_backup_codes c WHERE c.identity_id = sqlc.arg(id)::uuid)::bigint AS mfa_backup_codes,
  (SELECT count(*) FROM identity.sso_links l WHERE l.identity_id = sqlc.arg(id)::uuid)::bigint AS sso_links;

-- name: DeleteIdentityAPIKeyPrefixes :exec
-- The prefix lookup rows of an identity's keys, which hold no foreign key to it.
DELETE FROM identity.api_key_prefixes p
USING identity.api_keys k
WHERE k.identity_id = $1 AND p.prefix = k.prefix;

-- name: DeleteIdentityInvitations :many
-- Invitations that name the identity (the one it accepted) or that it sent.
DELETE FROM identity.invitations
WHERE accepted_identity_id = sqlc.arg(id)::uuid OR inviter_identity_id = sqlc.arg(id)::uuid
RETURNING token_prefix;

-- name: DeleteInvitationTokenPrefixes :exec
DELETE FROM identity.invitation_token_prefixes WHERE prefix = ANY (sqlc.arg(prefixes)::text[]);

-- name: ForgetAPIKeyCreator :execrows
-- Keys of other identities that the erased one made keep no trace of it.
UPDATE identity.api_keys SET creator_identity_id = NULL WHERE creator_identity_id = $1;

-- name: GetTenantErasure :one
-- A tenant's receipt, read outside any tenant (the tenant_receipts policy).
SELECT * FROM identity.erasures WHERE id = $1 AND subject_kind = 'tenant';

-- name: ListTenantIdentityIDs :many
-- Every identity of the transaction's tenant, deleted or not, for its erasure.
SELECT id FROM identity.identities ORDER BY id;

-- name: CountTenantErasable :one
SELECT
  (SELECT count(*) FROM identity.sso_providers)::bigint AS sso_providers,
  (SELECT count(*) FROM identity.invitations)::bigint AS invitations,
  (SELECT count(*) FROM identity.sessions)::bigint AS sessions,
  (SELECT count(*) FROM identity.api_keys)::bigint AS api_keys,
  (SELECT count(*) FROM identity.mfa_totp)::bigint AS mfa_factors;

-- name: DeleteTenant :execrows
-- The tenant row; what is left of its rows goes with it (ON DELETE CASCADE).
DELETE FROM identity.tenants WHERE id = $1;
