-- +goose Up
-- Memories: one row per memory, its current content, its embedding and its lifecycle.
-- embedding_status: 1 pending, 2 ready, 3 failed (the values of memoryv1.EmbeddingStatus).
CREATE TABLE memory.memories (
  id                  uuid PRIMARY KEY,
  tenant_id           uuid NOT NULL,
  identity_id         uuid NOT NULL,
  agent_id            uuid,
  session_id          text,
  text                text NOT NULL,
  type                text NOT NULL DEFAULT 'general',
  metadata            jsonb NOT NULL DEFAULT '{}',
  version             integer NOT NULL DEFAULT 1,
  embedding           vector(384),
  embedding_model     text NOT NULL DEFAULT '',
  embedding_status    smallint NOT NULL DEFAULT 1 CHECK (embedding_status IN (1, 2, 3)),
  embedding_error     text NOT NULL DEFAULT '',
  tsv                 tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
  idempotency_key     text,
  request_hash        bytea,
  expire_time         timestamptz,
  create_time         timestamptz NOT NULL DEFAULT now(),
  update_time         timestamptz NOT NULL DEFAULT now(),
  delete_time         timestamptz,
  actor_id            uuid
);

-- Approximate nearest neighbours (cosine), searched with iterative scans.
CREATE INDEX memories_embedding_hnsw ON memory.memories
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
-- Scopes, newest first (lists and exact scans of small scopes).
CREATE INDEX memories_tenant_time ON memory.memories (tenant_id, create_time DESC, id DESC);
CREATE INDEX memories_identity_time ON memory.memories (tenant_id, identity_id, create_time DESC, id DESC);
CREATE INDEX memories_agent ON memory.memories (tenant_id, agent_id) WHERE agent_id IS NOT NULL;
CREATE INDEX memories_session ON memory.memories (tenant_id, session_id) WHERE session_id IS NOT NULL;
-- Keyword search.
CREATE INDEX memories_tsv ON memory.memories USING gin (tsv);
-- Metadata equality and containment filters (compiled to @>).
CREATE INDEX memories_metadata ON memory.memories USING gin (metadata jsonb_path_ops);
CREATE INDEX memories_expire ON memory.memories (tenant_id, expire_time) WHERE expire_time IS NOT NULL;
CREATE UNIQUE INDEX memories_idempotency ON memory.memories (tenant_id, identity_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Versions: the content after each change; version 1 is the content at creation.
CREATE TABLE memory.memory_versions (
  memory_id      uuid NOT NULL REFERENCES memory.memories (id) ON DELETE CASCADE,
  version        integer NOT NULL,
  tenant_id      uuid NOT NULL,
  text           text NOT NULL,
  type           text NOT NULL,
  metadata       jsonb NOT NULL,
  expire_time    timestamptz,
  changed_fields text[] NOT NULL DEFAULT '{}',
  actor_id       uuid,
  create_time    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (memory_id, version)
);

ALTER TABLE memory.memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.memories FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory.memories
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE memory.memory_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory.memory_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory.memory_versions
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- Work of the background sweepers, which run across tenants. Like the outbox these
-- tables hold ids and times only, no tenant-readable content, so they carry no RLS:
-- a sweeper finds due work here, then handles each tenant's memories in a
-- transaction scoped to that tenant. Rows are written in the same transaction as
-- the memory change and go away with the memory (ON DELETE CASCADE).
CREATE TABLE memory.embedding_jobs (
  memory_id   uuid PRIMARY KEY REFERENCES memory.memories (id) ON DELETE CASCADE,
  tenant_id   uuid NOT NULL,
  attempts    integer NOT NULL DEFAULT 0,
  retry_time  timestamptz NOT NULL DEFAULT now(),
  last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX embedding_jobs_due ON memory.embedding_jobs (retry_time);

CREATE TABLE memory.expirations (
  memory_id   uuid PRIMARY KEY REFERENCES memory.memories (id) ON DELETE CASCADE,
  tenant_id   uuid NOT NULL,
  expire_time timestamptz NOT NULL
);
CREATE INDEX expirations_due ON memory.expirations (expire_time);

-- +goose Down
DROP TABLE memory.expirations;
DROP TABLE memory.embedding_jobs;
DROP TABLE memory.memory_versions;
DROP TABLE memory.memories;
