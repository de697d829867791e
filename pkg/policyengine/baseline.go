package policyengine

import (
	"embed"
	"fmt"
	"slices"
	"strings"

	"github.com/manushya-ai/manushya/pkg/authz"
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
	{"self", "builtin-self-service", "Every identity may read and export itself, log out, and manage its MFA, password and sessions.",
		Wildcard, []string{"read_self", "export_self", "logout", "mfa_setup", "mfa_verify", "mfa_disable", "change_password", "read", "list", "revoke"},
		nil, Allow, BaselinePriority},
	{"readonly", "builtin-readonly", "Readonly identities read their tenant.",
		Wildcard, []string{"read", "list", "search", "read_self", "embed"}, []string{"readonly"}, Allow, BaselinePriority},
	{"user", "builtin-user", "Users work with their own memories (those they own or keep as agent).",
		"memory", authz.MemoryOwnerActions, []string{"user"}, Allow, BaselinePriority},
	{"agent", "builtin-agent", "Agents work with their own memories (those they own or keep as agent).",
		"memory", authz.MemoryOwnerActions, []string{"agent"}, Allow, BaselinePriority},
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

// shippedSources are the built-ins' sources as shipped, by name.
var shippedSources = func() map[string]string {
	out := map[string]string{}
	for _, p := range Baseline() {
		out[p.Name] = p.Source
	}
	return out
}()

// isShipped reports whether p is a built-in with its shipped source (the policy
// service refuses changes to built-in sources; a loader that passed another source
// gets it evaluated as written).
func isShipped(p Policy) bool {
	src, ok := shippedSources[p.Name]
	return ok && p.Builtin && p.Language == Rego && p.Source == src
}

// isOwnershipBaseline reports whether p is the shipped user or agent baseline,
// whose condition is "the caller's own memory".
func isOwnershipBaseline(p Policy) bool {
	return isShipped(p) && (p.Name == "builtin-user" || p.Name == "builtin-agent")
}

// nativeBaseline returns the shipped built-in's condition written in Go, nil for
// any other policy. Every request of every tenant evaluates the scope baseline and
// most evaluate a role baseline, so these run without OPA; their Rego stays the
// definition (listed by the API, used for reasons), and
// TestNativeBaselinesMatchRego checks each against it over a grid of inputs.
func nativeBaseline(p Policy) func(*Input) bool {
	if !isShipped(p) {
		return nil
	}
	switch p.Name {
	case "builtin-scopes":
		return scopesDeny
	case "builtin-self-service":
		return selfService
	case "builtin-readonly":
		return func(in *Input) bool { return readAction(in.Action) }
	case "builtin-user", "builtin-agent":
		return ownsResource
	}
	return nil
}

func readAction(a string) bool {
	switch a {
	case "read", "list", "search", "read_self", "embed":
		return true
	}
	return false
}

// scopesDeny is builtin-scopes: a credential with scopes that allow none of
// "*", "admin", "write", "read" (for read actions), "<type>.<action>" or "<type>.*".
func scopesDeny(in *Input) bool {
	scopes := in.Principal.Scopes
	if len(scopes) == 0 {
		return false
	}
	typ, act := in.Resource.Type, in.Action
	for _, s := range scopes {
		switch s {
		case "*", "admin", "write":
			return false
		case "read":
			if readAction(act) {
				return false
			}
		}
		if rest, ok := strings.CutPrefix(s, typ); ok && len(rest) > 0 && rest[0] == '.' {
			if rest[1:] == act || rest[1:] == "*" {
				return false
			}
		}
	}
	return true
}

// selfService is builtin-self-service: what every identity may do about itself.
func selfService(in *Input) bool {
	switch in.Resource.Type {
	case "identity":
		return in.Action == "read_self" || in.Action == "export_self"
	case "auth":
		switch in.Action {
		case "logout", "mfa_setup", "mfa_verify", "mfa_disable", "change_password":
			return true
		}
	case "session":
		switch in.Action {
		case "read", "list", "revoke":
			return true
		}
	}
	return false
}

// ownsResource is the ownership baselines' condition: the resource names no owner
// yet, or the principal owns it or keeps it as agent.
func ownsResource(in *Input) bool {
	id := in.Principal.IdentityID
	if in.Resource.OwnerID == "" || in.Resource.OwnerID == id {
		return true
	}
	agent, _ := in.Resource.Attributes["agent_id"].(string)
	return id != "" && agent == id
}

// ShippedBaseline returns the built-in policy of that name as this version ships
// it. Stores keep a tenant's built-ins as rows written on first use; a built-in's
// source cannot be changed by tenants, so the shipped source replaces the stored
// one when an upgrade changes it (priority and enabled stay the tenant's).
func ShippedBaseline(name string) (Policy, bool) {
	for _, p := range Baseline() {
		if p.Name == name {
			return p, true
		}
	}
	return Policy{}, false
}
