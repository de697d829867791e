-- name: ListExpiredDeletedIdentities :many
-- Identities of the tenant soft-deleted at or before the cut-off, oldest first:
-- the retention sweeper's next batch.
SELECT id FROM identity.identities
WHERE tenant_id = sqlc.arg(tenant_id) AND delete_time IS NOT NULL AND delete_time <= sqlc.arg(cutoff)::timestamptz
ORDER BY delete_time, id
LIMIT sqlc.arg(page_limit);
