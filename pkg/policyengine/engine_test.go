package policyengine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/policyengine"
)

const (
	tenantA = "0190f0f0-0000-7000-8000-00000000000a"
	tenantB = "0190f0f0-0000-7000-8000-00000000000b"
	alice   = "0190f0f0-0000-7000-8000-0000000000a1"
	bob     = "0190f0f0-0000-7000-8000-0000000000b0"
	robot   = "0190f0f0-0000-7000-8000-0000000000c0"
)

func pol(name string, effect policyengine.Effect, priority int32, resource string, actions []string, roles []string, lang policyengine.Language, src string) policyengine.Policy {
	return policyengine.Policy{
		ID: "id-" + name, Name: name, Language: lang, Source: src, Resource: resource, Actions: actions,
		Effect: effect, Priority: priority, Enabled: true, Roles: roles, Version: 1,
	}
}

func always(name string, effect policyengine.Effect, priority int32, resource string, actions ...string) policyengine.Policy {
	return pol(name, effect, priority, resource, actions, nil, policyengine.Rego, "package x\nmatch := true\n")
}

func compile(t testing.TB, policies ...policyengine.Policy) *policyengine.Set {
	t.Helper()
	s, err := policyengine.Compile(context.Background(), tenantA, policies, policyengine.Options{})
	require.NoError(t, err)
	return s
}

func input(roles []string, action, resource string) policyengine.Input {
	return policyengine.Input{
		Principal: policyengine.Principal{IdentityID: alice, TenantID: tenantA, Kind: "user", Roles: roles},
		Action:    action,
		Resource:  policyengine.Resource{Type: resource},
	}
}

func TestDecisionSemantics(t *testing.T) {
	t.Parallel()
	user := []string{"user"}
	for name, tc := range map[string]struct {
		policies []policyengine.Policy
		in       policyengine.Input
		allow    bool
		decisive string
	}{
		"nothing applicable denies": {
			policies: []policyengine.Policy{always("a", policyengine.Allow, 1, "memory", "read")},
			in:       input(user, "delete", "memory"),
		},
		"no policies denies": {in: input(user, "read", "memory")},
		"allow applies": {
			policies: []policyengine.Policy{always("a", policyengine.Allow, 1, "memory", "read")},
			in:       input(user, "read", "memory"), allow: true, decisive: "a",
		},
		"higher priority allow beats deny": {
			policies: []policyengine.Policy{
				always("deny", policyengine.Deny, 1, "memory", "read"),
				always("allow", policyengine.Allow, 2, "memory", "read"),
			},
			in: input(user, "read", "memory"), allow: true, decisive: "allow",
		},
		"higher priority deny beats allow": {
			policies: []policyengine.Policy{
				always("deny", policyengine.Deny, 5, "memory", "read"),
				always("allow", policyengine.Allow, 2, "memory", "read"),
			},
			in: input(user, "read", "memory"), decisive: "deny",
		},
		"equal priority deny wins": {
			policies: []policyengine.Policy{
				always("allow", policyengine.Allow, 3, "memory", "read"),
				always("deny", policyengine.Deny, 3, "memory", "read"),
			},
			in: input(user, "read", "memory"), decisive: "deny",
		},
		"resource wildcard": {
			policies: []policyengine.Policy{always("any", policyengine.Allow, 1, "*", "read")},
			in:       input(user, "read", "webhook"), allow: true, decisive: "any",
		},
		"action wildcard": {
			policies: []policyengine.Policy{always("any", policyengine.Allow, 1, "memory", "*")},
			in:       input(user, "purge", "memory"), allow: true, decisive: "any",
		},
		"other resource not in scope": {
			policies: []policyengine.Policy{always("a", policyengine.Allow, 1, "identity", "*")},
			in:       input(user, "read", "memory"),
		},
		"role targeting excludes": {
			policies: []policyengine.Policy{pol("admins", policyengine.Allow, 1, "*", []string{"*"}, []string{"admin"}, policyengine.Rego, "package x\nmatch := true")},
			in:       input(user, "read", "memory"),
		},
		"role targeting includes any held role": {
			policies: []policyengine.Policy{pol("admins", policyengine.Allow, 1, "*", []string{"*"}, []string{"admin"}, policyengine.Rego, "package x\nmatch := true")},
			in:       input([]string{"user", "admin"}, "read", "memory"), allow: true, decisive: "admins",
		},
		"unmatched higher deny falls through": {
			policies: []policyengine.Policy{
				pol("deny-agents", policyengine.Deny, 9, "memory", []string{"*"}, nil, policyengine.Rego, `package x
match if input.principal.kind == "agent"`),
				always("allow", policyengine.Allow, 1, "memory", "read"),
			},
			in: input(user, "read", "memory"), allow: true, decisive: "allow",
		},
		"disabled policy ignored": {
			policies: []policyengine.Policy{func() policyengine.Policy {
				p := always("off", policyengine.Allow, 1, "memory", "read")
				p.Enabled = false
				return p
			}()},
			in: input(user, "read", "memory"),
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := compile(t, tc.policies...)
			for _, explain := range []bool{false, true, false} { // the third is served by the cache
				d := s.Decide(context.Background(), tc.in, explain)
				require.Equal(t, tc.allow, d.Allow)
				if tc.decisive == "" {
					require.Nil(t, d.Decisive)
					continue
				}
				require.NotNil(t, d.Decisive)
				require.Equal(t, tc.decisive, d.Decisive.Name)
			}
		})
	}
}

// The two attribute rules of the issue, each written in Rego and in JSON Logic.
func TestAttributeRules(t *testing.T) {
	t.Parallel()
	actsFor := map[policyengine.Language]string{
		policyengine.Rego: `package agents
match if {
	input.principal.kind == "agent"
	input.resource.owner_id == input.principal.claims.acts_for
}
reason := "an agent reads the memories of the identity it acts for" if match`,
		policyengine.JSONLogic: `{"and": [
			{"==": [{"var": "principal.kind"}, "agent"]},
			{"==": [{"var": "resource.owner_id"}, {"var": "principal.claims.acts_for"}]}
		]}`,
	}
	secret := map[policyengine.Language]string{
		policyengine.Rego: `package secret
match if input.resource.attributes.metadata.classification == "secret"
reason := "secret memories are not readable" if match`,
		policyengine.JSONLogic: `{"==": [{"var": "resource.attributes.metadata.classification"}, "secret"]}`,
	}
	for _, lang := range []policyengine.Language{policyengine.Rego, policyengine.JSONLogic} {
		t.Run(string(lang), func(t *testing.T) {
			t.Parallel()
			s := compile(t,
				pol("agent-acts-for", policyengine.Allow, 10, "memory", []string{"read", "search"}, []string{"agent"}, lang, actsFor[lang]),
				pol("deny-secret", policyengine.Deny, 10, "memory", []string{"read"}, nil, lang, secret[lang]),
			)
			agent := func(owner, classification string) policyengine.Input {
				in := policyengine.Input{
					Principal: policyengine.Principal{IdentityID: robot, TenantID: tenantA, Kind: "agent", Roles: []string{"agent"},
						Claims: map[string]any{"acts_for": alice}},
					Action:   "read",
					Resource: policyengine.Resource{Type: "memory", ID: "m1", OwnerID: owner},
				}
				if classification != "" {
					in.Resource.Attributes = map[string]any{"metadata": map[string]any{"classification": classification}}
				}
				return in
			}
			for _, tc := range []struct {
				in       policyengine.Input
				allow    bool
				decisive string
			}{
				{agent(alice, ""), true, "agent-acts-for"},
				{agent(alice, "public"), true, "agent-acts-for"},
				{agent(bob, ""), false, ""},
				{agent(alice, "secret"), false, "deny-secret"},
			} {
				for range 2 {
					d := s.Decide(context.Background(), tc.in, false)
					require.Equal(t, tc.allow, d.Allow, "%+v", tc.in.Resource)
					if tc.decisive == "" {
						require.Nil(t, d.Decisive)
					} else {
						require.Equal(t, tc.decisive, d.Decisive.Name)
					}
				}
			}
			d := s.Decide(context.Background(), agent(alice, "secret"), true)
			require.Len(t, d.Evaluations, 2)
			require.True(t, d.Evaluations[0].Decisive)
			require.Equal(t, "deny-secret", d.Evaluations[0].Name)
			if lang == policyengine.Rego {
				require.Equal(t, "secret memories are not readable", d.Reason())
			}
		})
	}
}

func TestValidateReportsPositions(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		lang   policyengine.Language
		src    string
		prefix string
	}{
		"rego parse error":    {policyengine.Rego, "package x\n\nmatch if {\n", "4:"},
		"rego unsafe var":     {policyengine.Rego, "package x\nmatch if {\n  x == 1\n}\n", "3:3: rego_unsafe_var_error"},
		"rego no match rule":  {policyengine.Rego, "package x\nallow := true\n", "1:1: rego_type_error"},
		"http.send refused":   {policyengine.Rego, "package x\nmatch if {\n  http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1\"}).status_code == 200\n}\n", "3:3: rego_type_error: undefined function http.send"},
		"net lookup refused":  {policyengine.Rego, "package x\nmatch if count(net.lookup_ip_addr(\"example.org\")) > 0\n", "2:"},
		"data read refused":   {policyengine.Rego, "package x\nmatch if data.other.secret == 1\n", "2:10: sandbox_error"},
		"data import refused": {policyengine.Rego, "package x\nimport data.other\nmatch := true\n", "2:1: sandbox_error"},
		"time refused":        {policyengine.Rego, "package x\nmatch if time.now_ns() > 0\n", "2:10: rego_type_error"},
		"json malformed":      {policyengine.JSONLogic, `{"==": [1, }`, "$: malformed JSON"},
		"json unknown op":     {policyengine.JSONLogic, `{"and": [{"==": [1, 1]}, {"frobnicate": [1]}]}`, `$.and[1]: unknown operator "frobnicate"`},
		"json two keys":       {policyengine.JSONLogic, `{"and": [true], "or": [false]}`, "$: an operation is an object with exactly one operator"},
		"json trailing":       {policyengine.JSONLogic, `{"var": "a"} {}`, "$: malformed JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := policyengine.Validate(always("p", policyengine.Allow, 1, "memory", "read"), policyengine.Options{})
			require.NoError(t, err)
			p := pol("p", policyengine.Allow, 1, "memory", []string{"read"}, nil, tc.lang, tc.src)
			err = policyengine.Validate(p, policyengine.Options{})
			var se *policyengine.SourceError
			require.ErrorAs(t, err, &se)
			require.True(t, strings.HasPrefix(se.Description, tc.prefix), "got %q", se.Description)
		})
	}
}

func TestSandboxBoundsEvaluation(t *testing.T) {
	t.Parallel()
	// 60^5 iterations: far beyond the timeout, cut off between steps.
	expensive := `package x
xs := [i | some i, _ in array.concat([1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30],
	[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30])]
match if count([1 | some a in xs; some b in xs; some c in xs; some d in xs; some e in xs]) > 0`
	for _, effect := range []policyengine.Effect{policyengine.Allow, policyengine.Deny} {
		s, err := policyengine.Compile(context.Background(), tenantA, []policyengine.Policy{
			pol("slow", effect, 10, "memory", []string{"read"}, nil, policyengine.Rego, expensive),
			always("fallback", policyengine.Allow, 1, "memory", "read"),
		}, policyengine.Options{EvalTimeout: 20 * 1000 * 1000})
		require.NoError(t, err)
		d := s.Decide(context.Background(), input(nil, "read", "memory"), true)
		require.ErrorIs(t, d.Evaluations[0].Err, policyengine.ErrEvalTimeout)
		// Fail closed: a policy that cannot be evaluated denies at its place,
		// whatever its effect; the lower allow never gets a say.
		require.False(t, d.Allow, effect)
		require.Equal(t, "slow", d.Decisive.Name)
		require.Contains(t, d.Decisive.Reason, "evaluation failed")
	}

	big := pol("big", policyengine.Allow, 1, "memory", []string{"read"}, nil, policyengine.Rego,
		"package x\nmatch := true\n# "+strings.Repeat("a", policyengine.DefaultMaxSourceBytes))
	var se *policyengine.SourceError
	require.ErrorAs(t, policyengine.Validate(big, policyengine.Options{}), &se)
	require.Contains(t, se.Description, "policy_too_large")

	// A stored policy that no longer compiles fails closed too.
	s := compile(t,
		pol("broken-deny", policyengine.Deny, 10, "memory", []string{"read"}, nil, policyengine.Rego, "package x\nmatch if data.x == 1"),
		always("allow", policyengine.Allow, 1, "memory", "read"))
	require.False(t, s.Decide(context.Background(), input(nil, "read", "memory"), false).Allow)
}

func TestJSONLogicErrorFailsClosed(t *testing.T) {
	t.Parallel()
	// Division of a string: the library panics or errors; either way no grant.
	s := compile(t,
		pol("odd", policyengine.Allow, 5, "memory", []string{"read"}, nil, policyengine.JSONLogic, `{"in": [{"var": "action"}, {"var": "resource.attributes.list"}]}`),
	)
	in := input(nil, "read", "memory")
	in.Resource.Attributes = map[string]any{"list": []any{"read", "write"}}
	require.True(t, s.Decide(context.Background(), in, false).Allow)
	in.Resource.Attributes = map[string]any{"list": []any{"write"}}
	require.False(t, s.Decide(context.Background(), in, false).Allow)
}
