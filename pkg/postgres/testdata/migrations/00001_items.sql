-- +goose Up
CREATE TABLE items (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name      text NOT NULL,
    UNIQUE (tenant_id, name)
);

ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON items
    USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- +goose Down
DROP TABLE items;
