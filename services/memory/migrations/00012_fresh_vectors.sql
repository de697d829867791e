-- +goose Up
-- Fresh vectors. Inserting a vector into the HNSW graph costs about 2 ms of
-- CPU a row on two cores, and storing a vector used to pay it on the way to
-- searchable (storing 2,000 vectors: 3.7 s with the index, 90 ms without). A
-- stored vector is now searchable at once, before it is in the graph:
--
--   embedding_indexed = false  "fresh": searched by an exact scan of the
--                               tenant's fresh rows (memories_fresh below);
--   embedding_indexed = true   in the graph (the partial HNSW index).
--
-- A vector search ranks the union of both parts (search.go, annSQL). The
-- memory service's indexer (indexer.go) sets the flag in batches, which inserts
-- the rows into the graph off the searchable path. The flag matters only for
-- rows with a vector; writing a new vector (embedder, re-embedding) clears it.
--
-- Existing rows take true (a constant default: no rewrite), so an upgraded
-- database keeps its graph; new rows default to false.
ALTER TABLE memory.memories ADD COLUMN embedding_indexed boolean NOT NULL DEFAULT true;
ALTER TABLE memory.memories ALTER COLUMN embedding_indexed SET DEFAULT false;

-- A tenant's fresh rows, found without reading its indexed ones.
CREATE INDEX memories_fresh ON memory.memories (tenant_id)
  WHERE embedding IS NOT NULL AND NOT embedding_indexed;

-- The tenants that may have fresh rows: written by whoever stores a vector (in
-- its transaction, as an upsert that holds the row until commit), removed by
-- the indexer before it drains the tenant. Ids only, like the other work
-- queues: no RLS.
CREATE TABLE memory.fresh_tenants (
  tenant_id  uuid PRIMARY KEY,
  since_time timestamptz NOT NULL DEFAULT now()
);

-- The graph becomes partial. The rebuild holds a lock that blocks writes to
-- memories while it runs (as in 00004 and 00006: minutes for a few hundred
-- thousand rows on two busy cores); migrate a large deployment in a quiet
-- window.
DROP INDEX memory.memories_embedding_hnsw;
CREATE INDEX memories_embedding_hnsw ON memory.memories
  USING hnsw ((memory.fenced_embedding(embedding, tenant_id)::halfvec(416)) halfvec_cosine_ops)
  WITH (m = 16, ef_construction = 64) WHERE embedding_indexed;

-- +goose Down
DROP INDEX memory.memories_embedding_hnsw;
CREATE INDEX memories_embedding_hnsw ON memory.memories
  USING hnsw ((memory.fenced_embedding(embedding, tenant_id)::halfvec(416)) halfvec_cosine_ops)
  WITH (m = 16, ef_construction = 64);
DROP TABLE memory.fresh_tenants;
DROP INDEX memory.memories_fresh;
ALTER TABLE memory.memories DROP COLUMN embedding_indexed;
