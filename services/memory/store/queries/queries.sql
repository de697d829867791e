-- Static statements of the memory store. Reads of memory rows (get, list, search)
-- are in store.go: they share one column list with the dynamically filtered queries
-- (the filter grammar and search modes compose SQL that sqlc cannot express), and
-- they never transfer the vector column.

-- name: InsertMemories :batchexec
-- New memories, all in one round trip (see the memory service's insertMany).
INSERT INTO memory.memories (
  id, tenant_id, identity_id, agent_id, session_id, text, type, metadata,
  embedding_model, idempotency_key, request_hash, expire_time, actor_id, create_time, update_time, text_sealed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15);

-- name: InsertVersion :exec
INSERT INTO memory.memory_versions (
  memory_id, version, tenant_id, text, type, metadata, expire_time, changed_fields, actor_id, create_time,
  text_sealed, identity_id, seal_row)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13);

-- name: InsertVersions :batchexec
INSERT INTO memory.memory_versions (
  memory_id, version, tenant_id, text, type, metadata, expire_time, changed_fields, actor_id, create_time,
  text_sealed, identity_id, seal_row)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13);

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
SET text = $2, type = $3, metadata = $4, expire_time = $5, version = version + 1, text_sealed = sqlc.narg(text_sealed),
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

-- name: EnqueueEmbeddings :batchexec
INSERT INTO memory.embedding_jobs (memory_id, tenant_id, retry_time)
VALUES ($1, $2, now() + make_interval(secs => sqlc.arg(grace_seconds)::double precision))
ON CONFLICT (memory_id) DO UPDATE SET attempts = 0, retry_time = EXCLUDED.retry_time, last_error = '';

-- name: SetExpirations :batchexec
INSERT INTO memory.expirations (memory_id, tenant_id, expire_time)
VALUES ($1, $2, $3)
ON CONFLICT (memory_id) DO UPDATE SET expire_time = EXCLUDED.expire_time;

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

-- name: EncryptText :one
-- Whether new writes of the transaction's tenant seal their text (no row: no).
SELECT encrypt_text FROM memory.settings WHERE tenant_id = $1;

-- name: GetSettings :one
SELECT * FROM memory.settings WHERE tenant_id = $1;

-- name: UpsertSettings :one
INSERT INTO memory.settings (tenant_id, encrypt_text, restore_window_days, update_time, actor_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id) DO UPDATE SET encrypt_text = EXCLUDED.encrypt_text,
  restore_window_days = EXCLUDED.restore_window_days, update_time = EXCLUDED.update_time, actor_id = EXCLUDED.actor_id
RETURNING *;

-- name: LockSettings :exec
-- Serialises the settings changes of one tenant (the row may not exist yet).
SELECT pg_advisory_xact_lock(hashtextextended('manushya memory settings ' || sqlc.arg(tenant_id)::uuid::text, 0));

-- name: RecordDeletion :exec
-- The restore window is the tenant's setting (30 days without a row); 0 keeps
-- the memory until it is hard-deleted.
INSERT INTO memory.deletions (memory_id, tenant_id, delete_time, purge_time)
SELECT sqlc.arg(memory_id)::uuid, sqlc.arg(tenant_id)::uuid, sqlc.arg(delete_time)::timestamptz,
  CASE WHEN w.days = 0 THEN NULL ELSE sqlc.arg(delete_time)::timestamptz + make_interval(days => w.days) END
FROM (SELECT COALESCE((SELECT s.restore_window_days FROM memory.settings s WHERE s.tenant_id = sqlc.arg(tenant_id)::uuid), 30) AS days) w
ON CONFLICT (memory_id) DO UPDATE SET delete_time = EXCLUDED.delete_time, purge_time = EXCLUDED.purge_time;

-- name: ForgetDeletion :exec
DELETE FROM memory.deletions WHERE memory_id = $1;

-- name: ReschedulePurges :exec
-- A new restore window applies to the memories deleted already.
UPDATE memory.deletions
SET purge_time = CASE WHEN sqlc.arg(days)::integer = 0 THEN NULL ELSE delete_time + make_interval(days => sqlc.arg(days)::integer) END
WHERE tenant_id = sqlc.arg(tenant_id)::uuid;

-- name: DuePurges :many
SELECT memory_id, tenant_id FROM memory.deletions
WHERE purge_time <= now()
ORDER BY purge_time
LIMIT $1;

-- name: RequestConversion :exec
INSERT INTO memory.text_conversions (tenant_id, settle_time)
VALUES ($1, $2)
ON CONFLICT (tenant_id) DO UPDATE SET settle_time = EXCLUDED.settle_time, attempts = 0, last_error = '';

-- name: ConversionPending :one
SELECT EXISTS (SELECT 1 FROM memory.text_conversions WHERE tenant_id = $1);

-- name: DueConversions :many
SELECT tenant_id, settle_time FROM memory.text_conversions ORDER BY tenant_id LIMIT $1;

-- name: ConversionDone :exec
-- Only the request the pass began under: a change meanwhile moved settle_time on.
DELETE FROM memory.text_conversions WHERE tenant_id = $1 AND settle_time = $2;

-- name: ConversionFailed :exec
UPDATE memory.text_conversions SET attempts = attempts + 1, last_error = $2 WHERE tenant_id = $1;

-- name: KeywordUnavailable :one
-- Whether the tenant's text is (or may partly be) sealed, so that its tsvectors
-- are empty: encrypt_text is on, or a conversion either way is still moving rows.
SELECT COALESCE((SELECT s.encrypt_text FROM memory.settings s WHERE s.tenant_id = sqlc.arg(tenant_id)::uuid), false)
  OR EXISTS (SELECT 1 FROM memory.text_conversions c WHERE c.tenant_id = sqlc.arg(tenant_id)::uuid);

-- name: RestoreWindowEnded :one
-- Whether a soft-deleted memory's restore window has ended (it awaits the purge).
SELECT EXISTS (SELECT 1 FROM memory.deletions WHERE memory_id = $1 AND purge_time <= now());
