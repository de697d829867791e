-- +goose Up
-- The retention sweeper looks, tenant by tenant, for identities soft-deleted
-- before the tenant's cut-off (TenantSettings.deleted_identity_retention_days);
-- live identities, nearly all of them, stay out of the index.
CREATE INDEX identities_deleted ON identity.identities (tenant_id, delete_time) WHERE delete_time IS NOT NULL;

-- +goose Down
DROP INDEX identity.identities_deleted;
