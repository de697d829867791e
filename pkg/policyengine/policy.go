package policyengine

import (
	"slices"
	"time"

	"github.com/manushya-ai/manushya/pkg/authz"
)

// Language of a policy's source.
type Language string

// Languages.
const (
	Rego      Language = "rego"
	JSONLogic Language = "json_logic"
)

// Effect of a matching policy.
type Effect string

// Effects.
const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// Wildcard covers every resource or every action.
const Wildcard = "*"

// Policy is one rule as stored by the policy service.
type Policy struct {
	ID          string
	Name        string
	Description string
	Language    Language
	Source      string
	Resource    string   // a resource type or "*"
	Actions     []string // actions, or ["*"]
	Effect      Effect
	Priority    int32
	Enabled     bool
	Roles       []string // empty: every principal
	Version     int32
	Builtin     bool
}

// covers reports whether p is in scope for the request, ignoring its condition.
func (p *Policy) covers(resource, action string, roles []string) (bool, string) {
	if p.Resource != Wildcard && p.Resource != resource {
		return false, "not in scope: resource is " + resource
	}
	if !slices.Contains(p.Actions, Wildcard) && !slices.Contains(p.Actions, action) {
		return false, "not in scope: action is " + action
	}
	if !rolesCover(p.Roles, roles) {
		return false, "not in scope: the principal holds none of its roles"
	}
	return true, ""
}

func rolesCover(policyRoles, principalRoles []string) bool {
	if len(policyRoles) == 0 {
		return true
	}
	for _, r := range principalRoles {
		if slices.Contains(policyRoles, r) {
			return true
		}
	}
	return false
}

// Principal is who asks, as policies see it in input.principal.
type Principal struct {
	IdentityID string
	TenantID   string
	Kind       string
	Roles      []string
	Scopes     []string
	// Claims are the identity's claims; ActsFor the identities it acts for (its
	// "acts_for" claim, one id or a list). The Authorizer loads them only for
	// policies that read them.
	Claims  map[string]any
	ActsFor []string
}

// Resource is what the request acts on, as policies see it in input.resource:
// {"type", "id", "owner_id", "tenant_id", "attributes"}.
type Resource = authz.Resource

// Input is one request to decide.
type Input struct {
	Principal Principal
	Action    string
	Resource  Resource
}

// Evaluation is how one policy fared.
type Evaluation struct {
	PolicyID string
	Name     string
	Version  int32
	Effect   Effect
	Priority int32
	Matched  bool
	Decisive bool
	Reason   string
	Err      error
}

// Decision is the outcome of a request.
type Decision struct {
	Allow bool
	// Decisive is the evaluation that decided; nil when no policy matched.
	Decisive *Evaluation
	// Evaluations lists every policy evaluated, in order of precedence; only filled
	// when the caller asked for an explanation.
	Evaluations []Evaluation
	// Duration is the evaluation time (zero for cached decisions).
	Duration time.Duration
	Cached   bool

	uncacheable bool // an evaluation failed: decide again next time
}

// Reason explains the decision in one line.
func (d *Decision) Reason() string {
	if d.Decisive == nil {
		return "no policy allows it"
	}
	if d.Decisive.Reason != "" {
		return d.Decisive.Reason
	}
	return "policy " + d.Decisive.Name
}

// Covers reports whether p's resource, actions and roles cover in, and if not, why.
func Covers(p Policy, in Input) (bool, string) {
	return p.covers(in.Resource.Type, in.Action, in.Principal.Roles)
}
