-- name: EnsureDayPartition :exec
SELECT webhooks.ensure_day_partition(sqlc.arg(parent)::text, sqlc.arg(day)::date);

-- name: DropDayPartitionsBefore :one
SELECT webhooks.drop_day_partitions_before(sqlc.arg(parent)::text, sqlc.arg(cutoff)::date)::integer;

-- name: InsertEvent :execrows
INSERT INTO webhooks.events (id, tenant_id, type, source, subject, identity_id, request_id, test, event_time, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id, event_time) DO NOTHING;

-- name: GetEvent :one
SELECT * FROM webhooks.events WHERE id = $1;

-- name: ListEvents :many
SELECT * FROM webhooks.events
WHERE (sqlc.narg(before_time)::timestamptz IS NULL
       OR (event_time, id) < (sqlc.narg(before_time)::timestamptz, sqlc.narg(before_id)::uuid))
  AND (sqlc.narg(type)::text IS NULL OR type = sqlc.narg(type)::text)
  AND (sqlc.narg(type_prefix)::text IS NULL OR starts_with(type, sqlc.narg(type_prefix)::text))
  AND (sqlc.narg(identity_id)::uuid IS NULL OR identity_id = sqlc.narg(identity_id)::uuid)
  AND (sqlc.narg(subject)::text IS NULL OR subject = sqlc.narg(subject)::text)
  AND (sqlc.narg(start_time)::timestamptz IS NULL OR event_time >= sqlc.narg(start_time)::timestamptz)
  AND (sqlc.narg(end_time)::timestamptz IS NULL OR event_time < sqlc.narg(end_time)::timestamptz)
ORDER BY event_time DESC, id DESC
LIMIT sqlc.arg(page_limit);

-- name: EventDailyCounts :many
SELECT to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD')::text AS day, type, count(*) AS count
FROM webhooks.events
WHERE event_time >= sqlc.arg(start_time)::timestamptz AND event_time < sqlc.arg(end_time)::timestamptz
  AND (sqlc.narg(type)::text IS NULL OR type = sqlc.narg(type)::text)
  AND (sqlc.narg(type_prefix)::text IS NULL OR starts_with(type, sqlc.narg(type_prefix)::text))
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: DeleteEventsBefore :execrows
DELETE FROM webhooks.events WHERE event_time < sqlc.arg(cutoff)::timestamptz;

-- name: CountEventsBefore :one
SELECT count(*) FROM webhooks.events WHERE event_time < sqlc.arg(cutoff)::timestamptz;

-- name: ListEventsInRange :many
SELECT * FROM webhooks.events
WHERE event_time >= sqlc.arg(start_time)::timestamptz AND event_time < sqlc.arg(end_time)::timestamptz
  AND NOT test
ORDER BY event_time, id;

-- name: CreateEndpoint :one
INSERT INTO webhooks.endpoints (id, tenant_id, name, url, events, description, enabled, headers,
  rate_limit_per_second, ordered, secret, disabled_reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING *;

-- name: GetEndpoint :one
SELECT * FROM webhooks.endpoints WHERE id = $1;

-- name: GetEndpointForUpdate :one
SELECT * FROM webhooks.endpoints WHERE id = $1 FOR UPDATE;

-- name: ListEndpoints :many
SELECT * FROM webhooks.endpoints
WHERE (sqlc.narg(before_time)::timestamptz IS NULL
       OR (create_time, id) < (sqlc.narg(before_time)::timestamptz, sqlc.narg(before_id)::uuid))
  AND (sqlc.narg(enabled)::boolean IS NULL OR enabled = sqlc.narg(enabled)::boolean)
  AND (sqlc.narg(event_type)::text IS NULL OR sqlc.narg(event_type)::text = ANY(events))
ORDER BY create_time DESC, id DESC
LIMIT sqlc.arg(page_limit);

-- name: MatchingEndpoints :many
SELECT * FROM webhooks.endpoints
WHERE enabled AND events && sqlc.arg(patterns)::text[];

-- name: UpdateEndpoint :one
UPDATE webhooks.endpoints SET
  name = $2, url = $3, events = $4, description = $5, enabled = $6, headers = $7,
  rate_limit_per_second = $8, ordered = $9, disabled_reason = $10, failing_since = $11,
  update_time = now()
WHERE id = $1
RETURNING *;

-- name: RotateEndpointSecret :one
UPDATE webhooks.endpoints SET
  previous_secret = secret, previous_secret_expire_time = sqlc.arg(previous_expire_time)::timestamptz,
  secret = sqlc.arg(secret)::bytea, update_time = now()
WHERE id = sqlc.arg(id)
RETURNING *;

-- name: DisableEndpoint :exec
UPDATE webhooks.endpoints SET enabled = false, disabled_reason = $2, update_time = now()
WHERE id = $1;

-- name: MarkEndpointFailing :one
UPDATE webhooks.endpoints SET failing_since = COALESCE(failing_since, sqlc.arg(now)::timestamptz)
WHERE id = sqlc.arg(id)
RETURNING failing_since;

-- name: MarkEndpointHealthy :exec
UPDATE webhooks.endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL;

-- name: DeleteEndpoint :execrows
DELETE FROM webhooks.endpoints WHERE id = $1;

-- name: CreateDelivery :execrows
INSERT INTO webhooks.deliveries (id, tenant_id, webhook_id, event_id, event_type, event_time, body, status,
  next_attempt_time, replay)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING;

-- name: EnqueueDelivery :one
INSERT INTO webhooks.delivery_queue (delivery_id, tenant_id, webhook_id, event_time, next_attempt_time, leased_until)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (delivery_id) DO UPDATE SET next_attempt_time = excluded.next_attempt_time, leased_until = excluded.leased_until
RETURNING seq;

-- name: GetDelivery :one
SELECT * FROM webhooks.deliveries WHERE id = $1;

-- name: GetDeliveryForUpdate :one
SELECT * FROM webhooks.deliveries WHERE id = $1 FOR UPDATE;

-- name: ListDeliveries :many
SELECT * FROM webhooks.deliveries
WHERE webhook_id = sqlc.arg(webhook_id)
  AND (sqlc.narg(before_time)::timestamptz IS NULL
       OR (create_time, id) < (sqlc.narg(before_time)::timestamptz, sqlc.narg(before_id)::uuid))
  AND (sqlc.narg(status)::smallint IS NULL OR status = sqlc.narg(status)::smallint)
  AND (sqlc.narg(event_type)::text IS NULL OR event_type = sqlc.narg(event_type)::text)
  AND (sqlc.narg(event_id)::uuid IS NULL OR event_id = sqlc.narg(event_id)::uuid)
  AND (sqlc.narg(start_time)::timestamptz IS NULL OR create_time >= sqlc.narg(start_time)::timestamptz)
  AND (sqlc.narg(end_time)::timestamptz IS NULL OR create_time < sqlc.narg(end_time)::timestamptz)
ORDER BY create_time DESC, id DESC
LIMIT sqlc.arg(page_limit);

-- name: SucceededEventIDs :many
SELECT DISTINCT event_id FROM webhooks.deliveries
WHERE webhook_id = $1 AND status = 2 AND event_time >= sqlc.arg(start_time)::timestamptz AND event_time < sqlc.arg(end_time)::timestamptz;

-- name: FinishAttempt :exec
UPDATE webhooks.deliveries SET
  status = $2, attempt_count = $3, next_attempt_time = $4, last_status_code = $5, last_error = $6,
  last_attempt_time = $7, update_time = now()
WHERE id = $1;

-- name: FailOpenDeliveries :exec
UPDATE webhooks.deliveries SET status = 3, next_attempt_time = NULL, last_error = sqlc.arg(reason)::text, update_time = now()
WHERE webhook_id = sqlc.arg(webhook_id) AND status IN (1, 4);

-- name: RescheduleDelivery :exec
UPDATE webhooks.deliveries SET status = 4, next_attempt_time = $2, update_time = now() WHERE id = $1;

-- name: InsertAttempt :exec
INSERT INTO webhooks.attempts (tenant_id, delivery_id, webhook_id, attempt_number, request_headers, request_body,
  request_body_truncated, response_status_code, response_headers, response_body, response_body_truncated,
  latency_us, error, start_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14);

-- name: ListAttempts :many
SELECT * FROM webhooks.attempts WHERE delivery_id = $1 ORDER BY attempt_number;

-- name: DeliveryStatusCounts :many
SELECT status, count(*) AS count FROM webhooks.deliveries
WHERE webhook_id = $1 AND create_time >= sqlc.arg(start_time)::timestamptz AND create_time < sqlc.arg(end_time)::timestamptz
GROUP BY status;

-- name: AttemptStats :one
SELECT count(*) AS attempts,
  COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us), 0)::float8 AS p50_us,
  COALESCE(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_us), 0)::float8 AS p95_us,
  COALESCE(max(start_time) FILTER (WHERE response_status_code BETWEEN 200 AND 299), 'epoch')::timestamptz AS last_success,
  COALESCE(max(start_time) FILTER (WHERE response_status_code NOT BETWEEN 200 AND 299), 'epoch')::timestamptz AS last_failure
FROM webhooks.attempts
WHERE webhook_id = $1 AND start_time >= sqlc.arg(start_time)::timestamptz AND start_time < sqlc.arg(end_time)::timestamptz;

-- name: LeaseDue :many
WITH due AS (
  SELECT q.delivery_id FROM webhooks.delivery_queue q
  WHERE q.next_attempt_time <= sqlc.arg(now)::timestamptz
    AND (q.leased_until IS NULL OR q.leased_until < sqlc.arg(now)::timestamptz)
    AND NOT (q.webhook_id = ANY(sqlc.arg(busy)::uuid[]))
  ORDER BY q.next_attempt_time, q.seq
  LIMIT sqlc.arg(max_rows)
  FOR UPDATE SKIP LOCKED
)
UPDATE webhooks.delivery_queue q SET leased_until = sqlc.arg(lease_until)::timestamptz
FROM due WHERE q.delivery_id = due.delivery_id
RETURNING q.delivery_id, q.tenant_id, q.webhook_id, q.seq;

-- name: ReleaseLease :exec
UPDATE webhooks.delivery_queue SET leased_until = NULL WHERE delivery_id = $1;

-- name: Dequeue :exec
DELETE FROM webhooks.delivery_queue WHERE delivery_id = $1;

-- name: RequeueAt :exec
UPDATE webhooks.delivery_queue SET next_attempt_time = $2, leased_until = NULL WHERE delivery_id = $1;

-- name: DequeueWebhook :exec
DELETE FROM webhooks.delivery_queue WHERE webhook_id = $1;

-- name: OldestQueuedBefore :one
SELECT COALESCE(min(next_attempt_time), 'epoch')::timestamptz AS next_attempt_time, count(*) AS count
FROM webhooks.delivery_queue
WHERE webhook_id = sqlc.arg(webhook_id) AND delivery_id <> sqlc.arg(delivery_id)
  AND (event_time, seq) < (sqlc.arg(event_time)::timestamptz, sqlc.arg(seq)::bigint);

-- name: LoadDelivery :one
SELECT sqlc.embed(d), sqlc.embed(e)
FROM webhooks.deliveries d JOIN webhooks.endpoints e ON e.id = d.webhook_id
WHERE d.id = $1;

-- name: RelaxCommit :exec
-- The attempt log may lose its last milliseconds in a database crash: the delivery
-- is then sent again with the same webhook-id, which receivers deduplicate.
SELECT set_config('synchronous_commit', 'off', true);

-- name: LockAuditHead :one
INSERT INTO webhooks.audit_heads (tenant_id, sequence, hash) VALUES ($1, 0, '')
ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id
RETURNING sequence, hash;

-- name: SetAuditHead :exec
UPDATE webhooks.audit_heads SET sequence = $2, hash = $3 WHERE tenant_id = $1;

-- name: AuditEventRecorded :one
SELECT EXISTS (SELECT 1 FROM webhooks.audit_entries WHERE tenant_id = $1 AND source_event_id = $2);

-- name: AuditEntriesRecorded :many
-- The records of ids already in the tenant's log: the audit writer appends each
-- record once, however often the bus delivers it.
SELECT id FROM webhooks.audit_entries WHERE tenant_id = @tenant_id AND id = ANY(@ids::uuid[]);

-- name: InsertAuditEntry :exec
INSERT INTO webhooks.audit_entries (tenant_id, sequence, id, source_event_id, actor_identity_id, actor_kind,
  actor_api_key_id, actor_session_id, actor_external_id, action, resource_type, resource_id, before, after,
  request_id, client_ip, user_agent, result, error_reason, create_time, prev_hash, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22);

-- name: GetAuditEntry :one
SELECT * FROM webhooks.audit_entries WHERE id = $1;

-- name: ListAuditEntries :many
SELECT * FROM webhooks.audit_entries
WHERE (sqlc.narg(before_sequence)::bigint IS NULL OR sequence < sqlc.narg(before_sequence)::bigint)
  AND (sqlc.narg(after_sequence)::bigint IS NULL OR sequence > sqlc.narg(after_sequence)::bigint)
  AND (sqlc.narg(actor_identity_id)::text IS NULL OR actor_identity_id = sqlc.narg(actor_identity_id)::text)
  AND (sqlc.narg(actor_kind)::smallint IS NULL OR actor_kind = sqlc.narg(actor_kind)::smallint)
  AND (sqlc.narg(actor_api_key_id)::text IS NULL OR actor_api_key_id = sqlc.narg(actor_api_key_id)::text)
  AND (sqlc.narg(action)::text IS NULL OR action = sqlc.narg(action)::text)
  AND (sqlc.narg(resource_type)::text IS NULL OR resource_type = sqlc.narg(resource_type)::text)
  AND (sqlc.narg(resource_id)::text IS NULL OR resource_id = sqlc.narg(resource_id)::text)
  AND (sqlc.narg(result)::smallint IS NULL OR result = sqlc.narg(result)::smallint)
  AND (sqlc.narg(request_id)::text IS NULL OR request_id = sqlc.narg(request_id)::text)
  AND (sqlc.narg(start_time)::timestamptz IS NULL OR create_time >= sqlc.narg(start_time)::timestamptz)
  AND (sqlc.narg(end_time)::timestamptz IS NULL OR create_time < sqlc.narg(end_time)::timestamptz)
ORDER BY
  CASE WHEN sqlc.arg(ascending)::boolean THEN sequence END ASC,
  sequence DESC
LIMIT sqlc.arg(page_limit);

-- name: AuditChainSlice :many
SELECT * FROM webhooks.audit_entries
WHERE sequence > sqlc.arg(after_sequence)::bigint AND sequence <= sqlc.arg(last_sequence)::bigint
ORDER BY sequence
LIMIT sqlc.arg(page_limit);

-- name: AuditBounds :one
SELECT COALESCE(min(sequence), 0)::bigint AS first_sequence, COALESCE(max(sequence), 0)::bigint AS last_sequence,
  COALESCE(min(create_time), 'epoch')::timestamptz AS oldest
FROM webhooks.audit_entries;

-- name: GetAuditSettings :one
SELECT * FROM webhooks.audit_settings WHERE tenant_id = $1;

-- name: UpsertAuditSettings :one
INSERT INTO webhooks.audit_settings (tenant_id, retention_days, update_time) VALUES ($1, $2, now())
ON CONFLICT (tenant_id) DO UPDATE SET retention_days = excluded.retention_days, update_time = now()
RETURNING *;

-- name: ListAuditSettings :many
SELECT * FROM webhooks.audit_settings WHERE retention_days > 0;

-- name: DeleteAuditBefore :execrows
DELETE FROM webhooks.audit_entries WHERE create_time < sqlc.arg(cutoff)::timestamptz;

-- name: RecordSuccess :exec
WITH d AS (
  UPDATE webhooks.deliveries SET status = 2, attempt_count = sqlc.arg(attempt_count), next_attempt_time = NULL,
    last_status_code = sqlc.arg(last_status_code), last_error = '', last_attempt_time = sqlc.arg(last_attempt_time)::timestamptz,
    update_time = now()
  WHERE id = sqlc.arg(id)
  RETURNING id
)
DELETE FROM webhooks.delivery_queue q USING d WHERE q.delivery_id = d.id;

-- name: CreateDeliveries :many
-- One statement for a batch of deliveries of one tenant; already-dispatched
-- (webhook, event) pairs are skipped, the others are queued, leased to the caller.
WITH ins AS (
  INSERT INTO webhooks.deliveries (id, tenant_id, webhook_id, event_id, event_type, event_time, body, status, next_attempt_time)
  SELECT u.id, sqlc.arg(tenant_id)::uuid, u.webhook_id, u.event_id, u.event_type, u.event_time, u.body, 1, sqlc.arg(now)::timestamptz
  FROM (SELECT unnest(sqlc.arg(ids)::uuid[]) AS id, unnest(sqlc.arg(webhook_ids)::uuid[]) AS webhook_id,
               unnest(sqlc.arg(event_ids)::uuid[]) AS event_id, unnest(sqlc.arg(event_types)::text[]) AS event_type,
               unnest(sqlc.arg(event_times)::timestamptz[]) AS event_time, unnest(sqlc.arg(bodies)::bytea[]) AS body) AS u
  ON CONFLICT DO NOTHING
  RETURNING id, webhook_id, event_time
)
INSERT INTO webhooks.delivery_queue (delivery_id, tenant_id, webhook_id, event_time, next_attempt_time, leased_until)
SELECT ins.id, sqlc.arg(tenant_id)::uuid, ins.webhook_id, ins.event_time, sqlc.arg(now)::timestamptz,
  CASE WHEN ins.webhook_id = ANY(sqlc.arg(leased_webhooks)::uuid[]) THEN sqlc.arg(leased_until)::timestamptz END
FROM ins
ORDER BY ins.event_time, ins.id
RETURNING delivery_id, webhook_id, seq, (leased_until IS NOT NULL)::boolean AS leased;

-- name: ReleaseLeases :exec
UPDATE webhooks.delivery_queue SET leased_until = NULL WHERE delivery_id = ANY(sqlc.arg(ids)::uuid[]);

-- name: InsertAttempts :exec
-- A batch of one tenant's attempts in one statement (the recorder's group commit).
INSERT INTO webhooks.attempts (tenant_id, delivery_id, webhook_id, attempt_number, request_headers, request_body,
  request_body_truncated, response_status_code, response_headers, response_body, response_body_truncated,
  latency_us, error, start_time)
SELECT sqlc.arg(tenant_id)::uuid, u.delivery_id, u.webhook_id, u.attempt_number, u.request_headers::jsonb, u.request_body,
  u.request_body_truncated, u.response_status_code, u.response_headers::jsonb, u.response_body,
  u.response_body_truncated, u.latency_us, u.error, u.start_time
FROM (SELECT unnest(sqlc.arg(delivery_ids)::uuid[]) AS delivery_id, unnest(sqlc.arg(webhook_ids)::uuid[]) AS webhook_id,
             unnest(sqlc.arg(attempt_numbers)::integer[]) AS attempt_number,
             unnest(sqlc.arg(request_headers)::text[]) AS request_headers,
             unnest(sqlc.arg(request_bodies)::text[]) AS request_body,
             unnest(sqlc.arg(request_body_truncated)::boolean[]) AS request_body_truncated,
             unnest(sqlc.arg(response_status_codes)::integer[]) AS response_status_code,
             unnest(sqlc.arg(response_headers)::text[]) AS response_headers,
             unnest(sqlc.arg(response_bodies)::text[]) AS response_body,
             unnest(sqlc.arg(response_body_truncated)::boolean[]) AS response_body_truncated,
             unnest(sqlc.arg(latencies_us)::bigint[]) AS latency_us, unnest(sqlc.arg(errors)::text[]) AS error,
             unnest(sqlc.arg(start_times)::timestamptz[]) AS start_time) AS u;

-- name: RecordSuccesses :exec
-- RecordSuccess for a batch of deliveries: each marked succeeded and dequeued.
WITH u AS (
  SELECT unnest(sqlc.arg(ids)::uuid[]) AS id, unnest(sqlc.arg(attempt_counts)::integer[]) AS attempt_count,
         unnest(sqlc.arg(status_codes)::integer[]) AS status_code,
         unnest(sqlc.arg(attempt_times)::timestamptz[]) AS attempt_time
), d AS (
  UPDATE webhooks.deliveries SET status = 2, attempt_count = u.attempt_count, next_attempt_time = NULL,
    last_status_code = u.status_code, last_error = '', last_attempt_time = u.attempt_time, update_time = now()
  FROM u WHERE webhooks.deliveries.id = u.id
  RETURNING webhooks.deliveries.id
)
DELETE FROM webhooks.delivery_queue q USING d WHERE q.delivery_id = d.id;

-- name: MarkEndpointsHealthy :exec
-- Writes only the endpoints that were failing: a healthy endpoint's row is left alone.
UPDATE webhooks.endpoints SET failing_since = NULL
WHERE id = ANY(sqlc.arg(ids)::uuid[]) AND failing_since IS NOT NULL;
