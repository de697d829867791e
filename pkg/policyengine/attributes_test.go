package policyengine_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/policyengine"
)

// The issue's two attribute rules, as a tenant writes them.
var (
	actsForRego = pol("agents-read-for", policyengine.Allow, 200, "memory", []string{"read", "list", "search"}, []string{"agent"},
		policyengine.Rego, `package agents
match if input.resource.owner_id in input.principal.acts_for`)
	actsForJSONLogic = pol("agents-read-for-jl", policyengine.Allow, 200, "memory", []string{"read", "list", "search"}, []string{"agent"},
		policyengine.JSONLogic, `{"in": [{"var": "resource.owner_id"}, {"var": "principal.acts_for"}]}`)
	denySecretRego = pol("deny-secret", policyengine.Deny, 500, "memory", []string{"read", "list", "search"}, nil,
		policyengine.Rego, `package secret
match if input.resource.attributes.metadata.classification == "secret"`)
	denySecretJSONLogic = pol("deny-secret-jl", policyengine.Deny, 500, "memory", []string{"read", "list", "search"}, nil,
		policyengine.JSONLogic, `{"==": [{"var": "resource.attributes.metadata.classification"}, "secret"]}`)
)

func TestPerResourceOnlyWithAttributeRules(t *testing.T) {
	t.Parallel()
	user, agent, admin := []string{"user"}, []string{"agent"}, []string{"admin"}

	// Baselines alone (their ownership rule is the service's query): no row is
	// decided on its own, for any role.
	base := compile(t, policyengine.Baseline()...)
	for _, roles := range [][]string{user, agent, admin, {"readonly"}} {
		for _, act := range []string{"read", "list", "search", "update"} {
			require.False(t, base.PerResource("memory", act, roles), "%v %s", roles, act)
		}
	}
	// Plain role policies read no resource either.
	plain := compile(t, append(policyengine.Baseline(),
		pol("role-only", policyengine.Deny, 300, "memory", []string{"delete"}, []string{"agent"}, policyengine.Rego,
			`package x
match if input.principal.kind == "agent"`),
		pol("type-only", policyengine.Allow, 300, "*", []string{"read"}, nil, policyengine.JSONLogic,
			`{"==": [{"var": "resource.type"}, "memory"]}`))...)
	require.False(t, plain.PerResource("memory", "delete", agent))
	require.False(t, plain.PerResource("memory", "read", user))

	for _, secret := range []policyengine.Policy{denySecretRego, denySecretJSONLogic} {
		s := compile(t, append(policyengine.Baseline(), secret)...)
		require.True(t, s.PerResource("memory", "list", user), secret.Name)
		require.True(t, s.PerResource("memory", "read", admin), secret.Name)
		require.False(t, s.PerResource("memory", "update", user), "%s does not cover update", secret.Name)
		require.False(t, s.PerResource("identity", "read", admin), secret.Name)
	}
	// A rule for agents only costs nothing to users.
	s := compile(t, append(policyengine.Baseline(), actsForRego)...)
	require.True(t, s.PerResource("memory", "list", agent))
	require.False(t, s.PerResource("memory", "list", user))

	// What the analysis cannot follow counts as reading everything.
	for name, src := range map[string]string{
		"whole input":    "package x\nmatch if count(input) > 2",
		"computed key":   "package x\nk := \"owner_id\"\nmatch if input.resource[k] == \"a\"",
		"whole resource": "package x\nmatch if input.resource == {}",
		"import alias":   "package x\nimport input.resource as r\nmatch if r.owner_id == \"a\"",
	} {
		s := compile(t, pol(name, policyengine.Deny, 1, "memory", []string{"list"}, nil, policyengine.Rego, src))
		require.True(t, s.PerResource("memory", "list", user), name)
	}
	for name, src := range map[string]string{
		"empty var":    `{"==": [{"var": ""}, 1]}`,
		"computed var": `{"==": [{"var": {"cat": ["resource.", "owner_id"]}}, "a"]}`,
		"missing":      `{"missing": ["resource.attributes.x"]}`,
		"element var":  `{"some": [{"var": "principal.roles"}, {"==": [{"var": "x"}, 1]}]}`,
	} {
		s := compile(t, pol(name, policyengine.Deny, 1, "memory", []string{"list"}, nil, policyengine.JSONLogic, src))
		require.True(t, s.PerResource("memory", "list", user), name)
	}
}

// TestIssueAttributeRules decides the issue's examples in both languages through the
// Authorizer, claims loaded from the identity only when a policy reads them.
func TestIssueAttributeRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		actsFor, secret policyengine.Policy
	}{
		{"rego", actsForRego, denySecretRego},
		{"json_logic", actsForJSONLogic, denySecretJSONLogic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var claimLoads atomic.Int32
			engine := policyengine.NewAuthorizer(policyengine.LoaderFunc(func(context.Context, string) ([]policyengine.Policy, error) {
				return append(policyengine.Baseline(), tc.actsFor, tc.secret), nil
			}), policyengine.AuthorizerConfig{PrincipalClaims: func(_ context.Context, tenant, ident string) (map[string]any, error) {
				claimLoads.Add(1)
				require.Equal(t, tenantA, tenant)
				if ident == robot {
					return map[string]any{"acts_for": []any{alice}}, nil
				}
				return map[string]any{}, nil
			}})
			ctx := context.Background()
			agent := &auth.Principal{TenantID: tenantA, IdentityID: robot, Kind: "agent", Roles: []string{"agent"}}
			user := &auth.Principal{TenantID: tenantA, IdentityID: bob, Kind: "user", Roles: []string{"user"}}
			mem := func(owner string, classification string) authz.Resource {
				return authz.Resource{Type: "memory", ID: "m1", OwnerID: owner, TenantID: tenantA,
					Attributes: map[string]any{"metadata": map[string]any{"classification": classification}}}
			}
			denied := func(err error) { t.Helper(); require.Equal(t, codes.PermissionDenied, status.Code(err), err) }

			// The agent reads the memories of the identity it acts for, not others'.
			require.NoError(t, engine.CheckResource(ctx, agent, "read", mem(alice, "internal")))
			require.NoError(t, engine.CheckResource(ctx, agent, "list", authz.Resource{Type: "memory", OwnerID: alice}))
			denied(engine.CheckResource(ctx, agent, "read", mem(bob, "internal")))
			// ... nor writes them: the policy grants reads.
			denied(engine.CheckResource(ctx, agent, "update", mem(alice, "internal")))
			// Secret memories are denied to everyone, their owner included.
			denied(engine.CheckResource(ctx, agent, "read", mem(alice, "secret")))
			denied(engine.CheckResource(ctx, user, "read", mem(bob, "secret")))
			require.NoError(t, engine.CheckResource(ctx, user, "read", mem(bob, "public")))
			// A user's own memories, and nobody else's, under the ownership baseline.
			denied(engine.CheckResource(ctx, user, "read", mem(alice, "public")))
			loadsBefore := claimLoads.Load()
			require.Positive(t, loadsBefore)
			// Claims are kept: deciding again loads nothing.
			require.NoError(t, engine.CheckResource(ctx, agent, "search", mem(alice, "internal")))
			require.Equal(t, loadsBefore, claimLoads.Load())
			// No policy covering identity.read reads claims: none are loaded.
			engine.Invalidate(tenantA)
			_ = engine.CheckResource(ctx, &auth.Principal{TenantID: tenantA, IdentityID: alice, Roles: []string{"admin"}}, "read",
				authz.Resource{Type: "identity", ID: alice})
			require.Equal(t, loadsBefore, claimLoads.Load())
		})
	}
}

// TestEvaluationErrorDeniesLogsAndCounts: a policy that fails at evaluation denies
// (whatever its effect), the failure is logged with the policy's name and counted,
// and the denial reaches the audit hook.
func TestEvaluationErrorDeniesLogsAndCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	metrics := policyengine.NewMetrics(reg)
	var logs syncBuffer
	var mu sync.Mutex
	var audited []policyengine.Decision
	// to_number("x") is an error under strict built-in errors: the allow at 300
	// fails, and must not let the baseline allow below it decide.
	failing := pol("bad-number", policyengine.Allow, 300, "memory", []string{"read"}, nil, policyengine.Rego,
		`package x
match if to_number(input.resource.attributes.n) > 1`)
	engine := policyengine.NewAuthorizer(policyengine.LoaderFunc(func(context.Context, string) ([]policyengine.Policy, error) {
		return append(policyengine.Baseline(), failing), nil
	}), policyengine.AuthorizerConfig{
		Options: policyengine.Options{Metrics: metrics, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		OnDecision: func(_ context.Context, tenant string, _ policyengine.Input, d policyengine.Decision) {
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, tenantA, tenant)
			audited = append(audited, d)
		},
	})
	p := &auth.Principal{TenantID: tenantA, IdentityID: alice, Kind: "user", Roles: []string{"user"}}
	res := authz.Resource{Type: "memory", OwnerID: alice, Attributes: map[string]any{"n": "not a number"}}
	for range 2 { // failures are never cached: each decision fails and counts
		err := engine.CheckResource(context.Background(), p, "read", res)
		require.Equal(t, codes.PermissionDenied, status.Code(err))
		require.ErrorContains(t, err, "evaluation failed")
	}
	require.InDelta(t, 2, counterValue(t, reg, "manushya_policy_evaluation_errors_total"), 0)
	require.Contains(t, logs.String(), "policy=bad-number")
	require.Contains(t, logs.String(), "failing closed")
	mu.Lock()
	require.Len(t, audited, 2)
	require.False(t, audited[0].Allow)
	require.Equal(t, "bad-number", audited[0].Decisive.Name)
	mu.Unlock()

	// A number decides normally.
	res.Attributes["n"] = "5"
	require.NoError(t, engine.CheckResource(context.Background(), p, "read", res))
}

func TestAllowSample(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sample float64
		want   int32
	}{{0, 0}, {1, 20}} {
		var n atomic.Int32
		engine := policyengine.NewAuthorizer(policyengine.LoaderFunc(func(context.Context, string) ([]policyengine.Policy, error) {
			return policyengine.Baseline(), nil
		}), policyengine.AuthorizerConfig{AllowSample: tc.sample,
			OnDecision: func(context.Context, string, policyengine.Input, policyengine.Decision) { n.Add(1) }})
		p := &auth.Principal{TenantID: tenantA, IdentityID: alice, Roles: []string{"admin"}}
		for range 20 {
			require.NoError(t, engine.CheckResource(context.Background(), p, "read", authz.Resource{Type: "memory"}))
		}
		require.Equal(t, tc.want, n.Load())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}
