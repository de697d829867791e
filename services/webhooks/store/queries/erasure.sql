-- Erasure (pkg/erasure): the stored events, deliveries and attempts about an
-- erased identity, or everything of an erased tenant. Run in the tenant's
-- transaction, so row-level security keeps them to it.

-- name: DeleteIdentityEvents :many
-- Events the identity did, or that are about it or its data (filed under it, named
-- as their subject, or carrying it as identity_id, owner_id or id). The erasure's
-- own events name it by id only and stay, as the record of the erasure.
DELETE FROM webhooks.events
WHERE type NOT IN ('identity.erased', 'identity.erasure.completed', 'erasure.progress')
  AND (identity_id = sqlc.arg(identity_id)::uuid
       OR subject = sqlc.arg(identity_id)::text
       OR data ->> 'identity_id' = sqlc.arg(identity_id)::text
       OR data ->> 'owner_id' = sqlc.arg(identity_id)::text
       OR data ->> 'id' = sqlc.arg(identity_id)::text)
RETURNING id;

-- name: DeleteEventDeliveries :many
-- Deliveries of the given events; their queue rows go with them.
DELETE FROM webhooks.deliveries WHERE event_id = ANY (sqlc.arg(event_ids)::uuid[]) RETURNING id;

-- name: DeleteDeliveryAttempts :execrows
DELETE FROM webhooks.attempts WHERE delivery_id = ANY (sqlc.arg(delivery_ids)::uuid[]);

-- name: DeleteTenantEvents :execrows
DELETE FROM webhooks.events WHERE tenant_id = $1;

-- name: DeleteTenantAttempts :execrows
DELETE FROM webhooks.attempts WHERE tenant_id = $1;

-- name: DeleteTenantDeliveries :execrows
DELETE FROM webhooks.deliveries WHERE tenant_id = $1;

-- name: DeleteTenantEndpoints :execrows
DELETE FROM webhooks.endpoints WHERE tenant_id = $1;
