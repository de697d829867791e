package policyengine

import (
	"embed"
	"fmt"
	"slices"
)

//go:embed baseline/*.rego
var baselineFS embed.FS

// BaselinePriority is the priority of the role baselines: a tenant policy above it
// overrides them, a deny at it beats them.
const BaselinePriority = 100

// ScopesPriority is the priority of the scope baseline, the highest there is, so
// scopes narrow whatever the other policies allow.
const ScopesPriority = 10000

type baselineDef struct {
	file, name, description string
	resource                string
	actions, roles          []string
	effect                  Effect
	priority                int32
}

var baselineDefs = []baselineDef{
	{"scopes", "builtin-scopes", "API-key and token scopes narrow what the roles allow.",
		Wildcard, []string{Wildcard}, nil, Deny, ScopesPriority},
	{"admin", "builtin-admin", "Admins manage their tenant.",
		Wildcard, []string{Wildcard}, []string{"admin"}, Allow, BaselinePriority},
	{"self", "builtin-self-service", "Every identity may read itself, log out, and manage its MFA, password and sessions.",
		Wildcard, []string{"read_self", "logout", "mfa_setup", "mfa_verify", "mfa_disable", "change_password", "read", "list", "revoke"},
		nil, Allow, BaselinePriority},
	{"readonly", "builtin-readonly", "Readonly identities read their tenant.",
		Wildcard, []string{"read", "list", "search", "read_self", "embed"}, []string{"readonly"}, Allow, BaselinePriority},
	{"user", "builtin-user", "Users work with their own memories (the memory service checks ownership).",
		"memory", []string{Wildcard}, []string{"user"}, Allow, BaselinePriority},
	{"agent", "builtin-agent", "Agents work with their own memories (the memory service checks ownership).",
		"memory", []string{Wildcard}, []string{"agent"}, Allow, BaselinePriority},
}

// Baseline returns the built-in policies every tenant starts with, equivalent to
// pkg/authz.BuiltinRoles. They are ordinary policies: a tenant may disable them or
// change their priority, and override them with its own.
func Baseline() []Policy {
	out := make([]Policy, 0, len(baselineDefs))
	for _, d := range baselineDefs {
		src, err := baselineFS.ReadFile("baseline/" + d.file + ".rego")
		if err != nil {
			panic(fmt.Sprintf("baseline policy %s: %v", d.file, err))
		}
		out = append(out, Policy{
			ID: "builtin:" + d.name, Name: d.name, Description: d.description, Language: Rego, Source: string(src),
			Resource: d.resource, Actions: slices.Clone(d.actions), Effect: d.effect, Priority: d.priority,
			Enabled: true, Roles: slices.Clone(d.roles), Version: 1, Builtin: true,
		})
	}
	return out
}
