-- +goose Up
-- The usage service's part of each erasure (pkg/erasure): which identities (or, with
-- identity_id NULL, whole tenants) were erased and whether the report went out.
-- It also keeps metering from bringing an erased identity back: the aggregator
-- drops events of identities and tenants listed here, which a busy stream may
-- still deliver after the erasure. Ids only, read across tenants by the
-- aggregator, so no row-level security (like the outbox).
CREATE TABLE usage.erasures (
  erasure_id  uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL,
  identity_id uuid,
  create_time timestamptz NOT NULL DEFAULT now(),
  report_time timestamptz
);
CREATE INDEX erasures_tenant ON usage.erasures (tenant_id, identity_id);

-- +goose Down
DROP TABLE usage.erasures;
