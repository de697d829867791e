-- Static statements of the memory store. Reads of memory rows (get, list, search)
-- are in store.go: they share one column list with the dynamically filtered queries
-- (the filter grammar and search modes compose SQL that sqlc cannot express), and
-- they never transfer the vector column.

-- name: InsertMemory :exec
INSERT INTO memory.memories (
  id, tenant_id, identity_id, agent_id, session_id, text, type, metadata,
  embedding_model, idempotency_key, request_hash, expire_time, actor_id, create_time, update_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14);

-- name: InsertVersion :exec
INSERT INTO memory.memory_versions (
  memory_id, version, tenant_id, text, type, metadata, expire_time, changed_fields, actor_id, create_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- name: ListVersions :many
SELECT * FROM memory.memory_versions
WHERE memory_id = sqlc.arg(memory_id)
  AND (sqlc.narg(before_version)::integer IS NULL OR version < sqlc.narg(before_version)::integer)
ORDER BY version DESC
LIMIT sqlc.arg(page_limit);

-- name: FindByIdempotencyKey :one
SELECT id, request_hash FROM memory.memories
WHERE tenant_id = $1 AND identity_id = $2 AND idempotency_key = $3;

-- name: UpdateContent :exec
UPDATE memory.memories
SET text = $2, type = $3, metadata = $4, expire_time = $5, version = version + 1,
    embedding_status = CASE WHEN sqlc.arg(reembed)::boolean THEN 1 ELSE embedding_status END,
    embedding = CASE WHEN sqlc.arg(reembed)::boolean THEN NULL ELSE embedding END,
    embedding_error = CASE WHEN sqlc.arg(reembed)::boolean THEN '' ELSE embedding_error END,
    embedding_model = CASE WHEN sqlc.arg(reembed)::boolean THEN sqlc.arg(embedding_model)::text ELSE embedding_model END,
    actor_id = $6, update_time = $7
WHERE id = $1;

-- name: SoftDelete :execrows
UPDATE memory.memories SET delete_time = $2 WHERE id = $1 AND delete_time IS NULL;

-- name: Restore :execrows
UPDATE memory.memories SET delete_time = NULL WHERE id = $1 AND delete_time IS NOT NULL;

-- name: HardDelete :execrows
DELETE FROM memory.memories WHERE id = $1;

-- name: EnqueueEmbedding :exec
-- The sweeper picks a job up only after grace_seconds: until then the embedder
-- consumer, woken by the memory's event, is expected to handle it.
INSERT INTO memory.embedding_jobs (memory_id, tenant_id, retry_time)
VALUES ($1, $2, now() + make_interval(secs => sqlc.arg(grace_seconds)::double precision))
ON CONFLICT (memory_id) DO UPDATE SET attempts = 0, retry_time = EXCLUDED.retry_time, last_error = '';

-- name: SetExpiration :exec
INSERT INTO memory.expirations (memory_id, tenant_id, expire_time)
VALUES ($1, $2, $3)
ON CONFLICT (memory_id) DO UPDATE SET expire_time = EXCLUDED.expire_time;

-- name: ClearExpiration :exec
DELETE FROM memory.expirations WHERE memory_id = $1;

-- name: DueEmbeddingJobs :many
SELECT memory_id, tenant_id FROM memory.embedding_jobs
WHERE retry_time <= now()
ORDER BY retry_time
LIMIT $1;

-- name: EmbeddingJobsDone :exec
DELETE FROM memory.embedding_jobs WHERE memory_id = ANY(sqlc.arg(ids)::uuid[]);

-- name: EmbeddingJobsFailed :exec
-- Exponential backoff from 1 s, capped at 10 minutes.
UPDATE memory.embedding_jobs
SET attempts = attempts + 1,
    retry_time = now() + least(interval '10 minutes', interval '1 second' * power(2, least(attempts, 20))),
    last_error = sqlc.arg(last_error)
WHERE memory_id = ANY(sqlc.arg(ids)::uuid[]);

-- name: DueExpirations :many
SELECT memory_id, tenant_id FROM memory.expirations
WHERE expire_time <= now()
ORDER BY expire_time
LIMIT $1;
