-- TOTP and backup codes (AuthService MFA RPCs and the login second factor).

-- name: StartTOTPSetup :execrows
-- Stores a pending secret, replacing a pending one; an active enrolment is kept.
INSERT INTO identity.mfa_totp (tenant_id, identity_id, secret_sealed, setup_expire_time)
VALUES ($1, $2, $3, $4)
ON CONFLICT (identity_id) DO UPDATE
SET secret_sealed = EXCLUDED.secret_sealed, setup_expire_time = EXCLUDED.setup_expire_time,
    last_step = 0, create_time = now()
WHERE identity.mfa_totp.enable_time IS NULL;

-- name: GetTOTPForUpdate :one
SELECT * FROM identity.mfa_totp WHERE identity_id = $1 FOR UPDATE;

-- name: TOTPEnabled :one
SELECT EXISTS (
  SELECT 1 FROM identity.mfa_totp WHERE identity_id = $1 AND enable_time IS NOT NULL
);

-- name: EnableTOTP :one
UPDATE identity.mfa_totp SET enable_time = now(), last_step = $2
WHERE identity_id = $1 AND enable_time IS NULL
RETURNING enable_time;

-- name: AdvanceTOTPStep :execrows
UPDATE identity.mfa_totp SET last_step = $2 WHERE identity_id = $1 AND last_step < $2;

-- name: DeleteTOTP :execrows
DELETE FROM identity.mfa_totp WHERE identity_id = $1;

-- name: DeleteBackupCodes :exec
DELETE FROM identity.mfa_backup_codes WHERE identity_id = $1;

-- name: InsertBackupCode :exec
INSERT INTO identity.mfa_backup_codes (tenant_id, identity_id, code_hash) VALUES ($1, $2, $3);

-- name: UseBackupCode :execrows
UPDATE identity.mfa_backup_codes SET use_time = now()
WHERE identity_id = $1 AND code_hash = $2 AND use_time IS NULL;

-- name: CountUnusedBackupCodes :one
SELECT count(*) FROM identity.mfa_backup_codes WHERE identity_id = $1 AND use_time IS NULL;
