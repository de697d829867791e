-- +goose Up
-- The policies of each tenant: the current version of each. The built-in baselines
-- are rows too (builtin = true), written on a tenant's first use of the service, so
-- they are listed, disabled and re-prioritised like any other.
CREATE TABLE policy.policies (
  id              uuid PRIMARY KEY,
  tenant_id       uuid NOT NULL,
  name            text NOT NULL,
  description     text NOT NULL DEFAULT '',
  language        text NOT NULL CHECK (language IN ('rego', 'json_logic')),
  source          text NOT NULL,
  resource        text NOT NULL,
  actions         text[] NOT NULL,
  effect          text NOT NULL CHECK (effect IN ('allow', 'deny')),
  priority        integer NOT NULL CHECK (priority BETWEEN 0 AND 10000),
  enabled         boolean NOT NULL,
  roles           text[] NOT NULL DEFAULT '{}',
  version         integer NOT NULL DEFAULT 1,
  builtin         boolean NOT NULL DEFAULT false,
  idempotency_key text,
  create_time     timestamptz NOT NULL DEFAULT now(),
  update_time     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT policies_name UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX policies_idempotency ON policy.policies (tenant_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX policies_order ON policy.policies (tenant_id, priority DESC, name);

-- Every version of every policy, the current one included. Rows outlive their policy:
-- a deleted policy's history stays readable for audit.
CREATE TABLE policy.policy_versions (
  policy_id      uuid NOT NULL,
  tenant_id      uuid NOT NULL,
  version        integer NOT NULL,
  name           text NOT NULL,
  description    text NOT NULL,
  language       text NOT NULL,
  source         text NOT NULL,
  resource       text NOT NULL,
  actions        text[] NOT NULL,
  effect         text NOT NULL,
  priority       integer NOT NULL,
  enabled        boolean NOT NULL,
  roles          text[] NOT NULL,
  builtin        boolean NOT NULL,
  changed_fields text[] NOT NULL DEFAULT '{}',
  actor_id       uuid,
  policy_create_time timestamptz NOT NULL,
  create_time    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (policy_id, version)
);
CREATE INDEX policy_versions_tenant ON policy.policy_versions (tenant_id, policy_id, version DESC);

ALTER TABLE policy.policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE policy.policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policy.policies
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

ALTER TABLE policy.policy_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE policy.policy_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policy.policy_versions
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);

-- +goose Down
DROP TABLE policy.policy_versions;
DROP TABLE policy.policies;
