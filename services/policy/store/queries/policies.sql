-- name: InsertPolicy :one
INSERT INTO policy.policies (id, tenant_id, name, description, language, source, resource, actions, effect,
  priority, enabled, roles, version, builtin, idempotency_key)
VALUES (@id, @tenant_id, @name, @description, @language, @source, @resource, @actions, @effect,
  @priority, @enabled, @roles, 1, @builtin, sqlc.narg(idempotency_key))
RETURNING *;

-- name: InsertBuiltinPolicy :execrows
INSERT INTO policy.policies (id, tenant_id, name, description, language, source, resource, actions, effect,
  priority, enabled, roles, version, builtin)
VALUES (@id, @tenant_id, @name, @description, 'rego', @source, @resource, @actions, @effect,
  @priority, true, @roles, 1, true)
ON CONFLICT (tenant_id, name) DO NOTHING;

-- name: GetPolicy :one
SELECT * FROM policy.policies WHERE id = @id;

-- name: GetPolicyForUpdate :one
SELECT * FROM policy.policies WHERE id = @id FOR UPDATE;

-- name: GetPolicyByIdempotencyKey :one
SELECT * FROM policy.policies WHERE idempotency_key = @idempotency_key;

-- name: ListPolicies :many
SELECT * FROM policy.policies
WHERE (sqlc.narg(resource)::text IS NULL OR resource = sqlc.narg(resource))
  AND (sqlc.narg(language)::text IS NULL OR language = sqlc.narg(language))
  AND (sqlc.narg(enabled)::boolean IS NULL OR enabled = sqlc.narg(enabled))
  AND (sqlc.narg(after_priority)::integer IS NULL
       OR priority < sqlc.narg(after_priority)
       OR (priority = sqlc.narg(after_priority) AND name > sqlc.narg(after_name)::text))
ORDER BY priority DESC, name
LIMIT @max_rows;

-- name: AllPolicies :many
SELECT * FROM policy.policies ORDER BY priority DESC, name;

-- name: UpdatePolicy :one
UPDATE policy.policies SET
  name = @name, description = @description, language = @language, source = @source,
  resource = @resource, actions = @actions, effect = @effect, priority = @priority,
  enabled = @enabled, roles = @roles, version = version + 1, update_time = now()
WHERE id = @id
RETURNING *;

-- name: DeletePolicy :execrows
DELETE FROM policy.policies WHERE id = @id;

-- name: InsertPolicyVersion :exec
INSERT INTO policy.policy_versions (policy_id, tenant_id, version, name, description, language, source,
  resource, actions, effect, priority, enabled, roles, builtin, changed_fields, actor_id, policy_create_time)
VALUES (@policy_id, @tenant_id, @version, @name, @description, @language, @source,
  @resource, @actions, @effect, @priority, @enabled, @roles, @builtin, @changed_fields, sqlc.narg(actor_id),
  @policy_create_time);

-- name: ListPolicyVersions :many
SELECT * FROM policy.policy_versions
WHERE policy_id = @policy_id
  AND (sqlc.narg(before_version)::integer IS NULL OR version < sqlc.narg(before_version))
ORDER BY version DESC
LIMIT @max_rows;
