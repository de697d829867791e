-- Everything the identity service holds about one identity, for its data export
-- (ExportService). Secrets (password hash, key hashes, TOTP secret, backup code
-- hashes, refresh tokens) are never selected.

-- name: ExportSessions :many
SELECT * FROM identity.sessions WHERE identity_id = $1 ORDER BY create_time, id;

-- name: ExportAPIKeys :many
SELECT * FROM identity.api_keys WHERE identity_id = $1 ORDER BY id;

-- name: ExportTOTP :many
-- At most one row: the enrolment's state, without its secret.
SELECT enable_time, setup_expire_time, create_time FROM identity.mfa_totp WHERE identity_id = $1;

-- name: ExportBackupCodes :one
SELECT count(*) AS total, count(*) FILTER (WHERE use_time IS NULL) AS unused
FROM identity.mfa_backup_codes WHERE identity_id = $1;

-- name: ExportSsoLinks :many
SELECT l.provider_id, p.name AS provider_name, l.subject, l.email, l.create_time, l.last_login_time
FROM identity.sso_links l JOIN identity.sso_providers p ON p.id = l.provider_id
WHERE l.identity_id = $1
ORDER BY l.create_time, l.provider_id;

-- name: ExportInvitations :many
-- The invitations addressed to the identity: the one it accepted and those sent to
-- its external id (an email address for people).
SELECT * FROM identity.invitations
WHERE accepted_identity_id = sqlc.arg(identity_id)::uuid OR lower(email) = lower(sqlc.arg(email)::text)
ORDER BY id;
