-- +goose Up
-- Per-tenant memory settings (GetMemorySettings, UpdateMemorySettings). A tenant
-- without a row has the defaults: text stored plain, restore window 30 days.
CREATE TABLE memory.settings (
  tenant_id           uuid PRIMARY KEY,
  encrypt_text        boolean NOT NULL DEFAULT false,
  restore_window_days integer NOT NULL DEFAULT 30 CHECK (restore_window_days BETWEEN 0 AND 3650),
  update_time         timestamptz NOT NULL DEFAULT now(),
  actor_id            uuid
);
ALTER TABLE memory.settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory.settings
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Sealed text (pkg/keyring) of tenants with encrypt_text: the text column of such
-- a row is empty (and so is its generated tsvector), text_sealed holds the
-- ciphertext, bound to the memory (and version) and sealed under the owner
-- identity's data key. Rows of other tenants leave it NULL.
ALTER TABLE memory.memories ADD COLUMN text_sealed bytea;
-- The keyring's re-encryption job pages through the sealed rows of each tenant
-- by key; the partial index keeps it off the plain rows.
CREATE INDEX memories_sealed ON memory.memories (id) WHERE text_sealed IS NOT NULL;

-- A version row's ciphertext is bound to "<memory id>/<version>" (seal_row, the
-- single-column key the re-encryption job needs) and sealed under the key of the
-- memory's owner (identity_id). Both are set on sealed rows only; plain rows
-- leave them NULL, so adding the columns rewrites nothing.
ALTER TABLE memory.memory_versions
  ADD COLUMN text_sealed bytea,
  ADD COLUMN identity_id uuid,
  ADD COLUMN seal_row    text;
CREATE UNIQUE INDEX memory_versions_sealed ON memory.memory_versions (seal_row) WHERE text_sealed IS NOT NULL;

-- Tenants whose rows are being moved to the form their setting asks for (sealed,
-- or plain again); the encryption sweeper works through them. Ids and times only,
-- like the other work queues: no RLS.
CREATE TABLE memory.text_conversions (
  tenant_id      uuid PRIMARY KEY,
  -- A pass that finds nothing left to move ends the conversion only if it began
  -- after settle_time (the change plus a margin for writes in flight that read
  -- the setting before it changed).
  settle_time    timestamptz NOT NULL,
  attempts       integer NOT NULL DEFAULT 0,
  last_error     text NOT NULL DEFAULT ''
);

-- Soft-deleted memories and when their restore window ends (NULL: a window of
-- 0 days, kept until hard-deleted). The restore-window sweeper hard-deletes the
-- due ones. Written with the soft delete, removed by a restore or with the memory.
CREATE TABLE memory.deletions (
  memory_id  uuid PRIMARY KEY REFERENCES memory.memories (id) ON DELETE CASCADE,
  tenant_id  uuid NOT NULL,
  delete_time timestamptz NOT NULL,
  purge_time timestamptz
);
CREATE INDEX deletions_due ON memory.deletions (purge_time) WHERE purge_time IS NOT NULL;
CREATE INDEX deletions_tenant ON memory.deletions (tenant_id);

-- Memories soft-deleted before this migration get the default window from their
-- deletion. The owner is filtered by the forced RLS like everyone else, so the
-- backfill lifts the force for its one statement.
ALTER TABLE memory.memories NO FORCE ROW LEVEL SECURITY;
INSERT INTO memory.deletions (memory_id, tenant_id, delete_time, purge_time)
SELECT id, tenant_id, delete_time, delete_time + interval '30 days'
FROM memory.memories WHERE delete_time IS NOT NULL;
ALTER TABLE memory.memories FORCE ROW LEVEL SECURITY;

-- +goose Down
DROP TABLE memory.deletions;
DROP TABLE memory.text_conversions;
DROP INDEX memory.memory_versions_sealed;
ALTER TABLE memory.memory_versions DROP COLUMN seal_row, DROP COLUMN identity_id, DROP COLUMN text_sealed;
DROP INDEX memory.memories_sealed;
ALTER TABLE memory.memories DROP COLUMN text_sealed;
DROP TABLE memory.settings;
