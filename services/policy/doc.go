// Package policy is the policy service: it stores each tenant's authorization
// policies (create, get, list, update with kept versions, delete, bulk upsert, test)
// and publishes policy.created, policy.updated and policy.deleted through its
// outbox, so every process's engine (pkg/policyengine) reloads that tenant.
//
// # Policies
//
// A policy governs one resource ("memory", ..., or "*") and a list of actions (or
// "*"), optionally only for principals holding one of its roles. Its source is the
// condition: a Rego module defining a boolean rule `match` (and optionally a string
// `reason`), or a JSON Logic rule that matches when truthy. Both see the request as
// input:
//
//	{"principal": {"identity_id", "tenant_id", "kind", "roles", "scopes", "claims", "acts_for"},
//	 "action": "read",
//	 "resource": {"type", "id", "owner_id", "tenant_id", "attributes"}}
//
// Handlers pass the attributes of what they load (docs/policies.md lists them);
// the interceptor, deciding before that, knows only the resource's type.
//
// # Decisions
//
// Only the enabled policies whose resource, actions and roles cover the request are
// evaluated. Of those whose condition matches, the highest priority decides; at
// equal priority deny beats allow; when none matches the request is denied. A policy
// that fails to evaluate (an error, the timeout) denies at its place, whatever its
// effect. Examples, for a user reading their own memory whose metadata says
// classification "secret":
//
//   - builtin-user (allow, 100) alone: allowed.
//   - plus deny-secret (deny, 500, `match if input.resource.attributes.metadata.classification == "secret"`):
//     denied, deny-secret decides.
//   - plus an allow at 500 for the same request: still denied (deny wins the tie).
//   - plus an allow at 600: allowed.
//   - builtin-user disabled and nothing else: denied (nothing applies).
//
// The same deny in JSON Logic:
//
//	{"==": [{"var": "resource.attributes.metadata.classification"}, "secret"]}
//
// and "an agent may read the memories of the identity it acts for":
//
//	package agents
//	match if input.resource.owner_id in input.principal.acts_for
//
// # Baselines
//
// Every tenant starts with the built-in policies of pkg/policyengine.Baseline
// (builtin-scopes, builtin-admin, builtin-self-service, builtin-readonly,
// builtin-user, builtin-agent), written as rows on the tenant's first use of the
// service so they are listed like any other. Their source cannot change and they
// cannot be deleted; a tenant disables them, re-prioritises them, or outranks them.
//
// # Sandbox
//
// Sources are compiled on save and refused with their position: Rego errors as
// "<line>:<column>: <code>: <message>", JSON Logic as "<JSON path>: <message>", on
// the `source` field. Network and non-deterministic built-ins do not exist for
// policies, reading `data` is refused, sources are capped at 64 KiB, and a decision's
// evaluation is bounded by a timeout.
package policy
