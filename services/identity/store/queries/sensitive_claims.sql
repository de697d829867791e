-- Sealed values of the claims a tenant marks sensitive (claims_sensitive.go).

-- name: UpsertSensitiveClaim :exec
INSERT INTO identity.sensitive_claims (tenant_id, identity_id, name, sealed)
VALUES ($1, $2, $3, $4)
ON CONFLICT (identity_id, name) DO UPDATE SET sealed = EXCLUDED.sealed, update_time = now();

-- name: DeleteSensitiveClaims :exec
-- Drops the named claims of an identity; with replace_all, every one of them.
DELETE FROM identity.sensitive_claims
WHERE identity_id = sqlc.arg(identity_id)
  AND (sqlc.arg(replace_all)::boolean OR name = ANY (sqlc.arg(names)::text[]));

-- name: ListSensitiveClaims :many
SELECT identity_id, name, sealed FROM identity.sensitive_claims
WHERE identity_id = ANY (sqlc.arg(identity_ids)::uuid[])
ORDER BY identity_id, name;

-- name: ListIdentitiesWithClaims :many
-- Live identities holding any of the named claims in plain text, a page at a
-- time in id order (sealing claims a tenant has just marked sensitive).
SELECT id, claims FROM identity.identities
WHERE claims ?| sqlc.arg(names)::text[] AND id > sqlc.arg(after_id)
ORDER BY id
LIMIT sqlc.arg(page_limit);

-- name: RemoveClaims :exec
UPDATE identity.identities SET claims = claims - sqlc.arg(names)::text[] WHERE id = sqlc.arg(id);
