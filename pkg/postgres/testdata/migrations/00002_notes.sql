-- +goose Up
-- vector resolves through the public schema, where the extension lives.
CREATE TABLE notes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL,
    item_id   bigint NOT NULL REFERENCES items (id),
    body      text NOT NULL,
    embedding vector(3)
);

ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notes
    USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- +goose Down
DROP TABLE notes;
