-- name: CreateRateLimit :one
INSERT INTO usage.rate_limits (id, tenant_id, scope, subject, route_group, rate, period_ms, burst, cost, shadow, description)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING *;

-- name: GetRateLimit :one
SELECT * FROM usage.rate_limits WHERE id = $1;

-- name: UpdateRateLimit :one
UPDATE usage.rate_limits
SET scope = $2, subject = $3, route_group = $4, rate = $5, period_ms = $6, burst = $7, cost = $8,
    shadow = $9, description = $10, update_time = now()
WHERE id = $1
RETURNING *;

-- name: DeleteRateLimit :one
DELETE FROM usage.rate_limits WHERE id = $1 RETURNING *;

-- name: ListRateLimits :many
SELECT * FROM usage.rate_limits
WHERE (tenant_id = sqlc.narg(tenant_id)::uuid OR (sqlc.arg(include_globals)::boolean AND tenant_id IS NULL))
  AND (sqlc.narg(scope)::text IS NULL OR scope = sqlc.narg(scope)::text)
  AND (sqlc.narg(subject)::text IS NULL OR subject = sqlc.narg(subject)::text)
  AND (sqlc.narg(route_group)::text IS NULL OR route_group = sqlc.narg(route_group)::text)
  AND (sqlc.narg(after_id)::uuid IS NULL OR id > sqlc.narg(after_id)::uuid)
ORDER BY id
LIMIT sqlc.arg(page_limit);

-- name: LimitsForTenant :many
-- Every limit visible in the transaction: the tenant's own and the globals.
SELECT * FROM usage.rate_limits;

-- name: GetQuotas :many
SELECT * FROM usage.quotas ORDER BY type;

-- name: DeleteQuotas :exec
DELETE FROM usage.quotas;

-- name: PutQuota :exec
INSERT INTO usage.quotas (tenant_id, type, monthly_limit, enforcement) VALUES ($1, $2, $3, $4);

-- name: MonthUsage :many
SELECT type, sum(quantity)::bigint AS quantity
FROM usage.rollup_type_daily
WHERE day >= sqlc.arg(month_start)::date AND day < sqlc.arg(month_end)::date
GROUP BY type;

-- name: RecordQuotaNotice :execrows
INSERT INTO usage.quota_notices (tenant_id, type, period, level) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING;
