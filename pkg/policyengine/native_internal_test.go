package policyengine

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/stretchr/testify/require"
)

// TestNativeBaselinesMatchRego checks each built-in evaluated in Go against its
// shipped Rego over a grid of inputs: the Rego is the definition users see.
func TestNativeBaselinesMatchRego(t *testing.T) {
	t.Parallel()
	set, err := Compile(context.Background(), "t", Baseline(), Options{CacheSize: -1})
	require.NoError(t, err)
	const self, other = "self-id", "other-id"
	types := []string{"memory", "identity", "auth", "session", "policy", "", "identity.read", "session.x"}
	actions := []string{"read", "list", "search", "read_self", "export_self", "embed", "create", "update", "delete", "logout",
		"mfa_setup", "mfa_verify", "mfa_disable", "change_password", "revoke", "test", "", "self"}
	scopeSets := [][]string{nil, {"read"}, {"write"}, {"admin"}, {"*"}, {"memory.read"}, {"memory.*"}, {"identity.*", "read"},
		{"session.revoke"}, {".read"}, {"memory."}, {"memoryx.read"}, {"auth.logout", "memory.search"}}
	owners := []struct{ owner, agent, identity string }{
		{"", "", self}, {self, "", self}, {other, "", self}, {other, self, self}, {other, other, self},
		{other, "", ""}, {"", "", ""}, {other, "", other},
	}
	natives := 0
	for _, p := range set.policies {
		if p.native == nil {
			continue
		}
		natives++
		for _, typ := range types {
			for _, act := range actions {
				for _, sc := range scopeSets {
					for i, o := range owners {
						if i > 0 && !p.ownership {
							break // only the ownership baselines read the owner
						}
						in := Input{
							Principal: Principal{IdentityID: o.identity, TenantID: "t", Kind: "user", Roles: []string{"user"}, Scopes: sc},
							Action:    act,
							Resource:  Resource{Type: typ, OwnerID: o.owner},
						}
						if o.agent != "" {
							in.Resource.Attributes = map[string]any{"agent_id": o.agent}
						}
						v, err := in.astValue()
						require.NoError(t, err)
						got, err := p.match.eval(context.Background(), v, nil)
						require.NoError(t, err)
						want := ast.Boolean(true).Equal(got)
						require.Equal(t, want, p.native(&in), "%s on %+v", p.Name, in)
					}
				}
			}
		}
	}
	require.Equal(t, 5, natives, "scopes, self-service, readonly, user and agent run natively")
}

// A built-in whose source is not the shipped one is evaluated as written.
func TestChangedBaselineIsNotNative(t *testing.T) {
	t.Parallel()
	ps := Baseline()
	for i := range ps {
		if ps[i].Name == "builtin-user" {
			ps[i].Source = "package x\nmatch if input.resource.owner_id == \"nobody\""
		}
	}
	set, err := Compile(context.Background(), "t", ps, Options{})
	require.NoError(t, err)
	for _, p := range set.policies {
		if p.Name == "builtin-user" {
			require.Nil(t, p.native)
			require.False(t, p.ownership)
			require.True(t, p.reads.row)
		}
	}
	require.True(t, set.PerResource("memory", "read", []string{"user"}))
}
