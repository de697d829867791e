package policyengine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/policyengine"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// hundredPolicies is a tenant with the baselines and 94 policies of its own, spread
// over resources and actions, in both languages, with attribute conditions.
func hundredPolicies() []policyengine.Policy {
	ps := policyengine.Baseline()
	resources := []string{"memory", "identity", "api_key", "session", "invitation", "webhook", "usage", "policy", "event"}
	actions := []string{"read", "list", "create", "update", "delete", "search"}
	for i := 0; len(ps) < 100; i++ {
		res, act := resources[i%len(resources)], actions[(i/len(resources))%len(actions)]
		effect := policyengine.Allow
		if i%3 == 0 {
			effect = policyengine.Deny
		}
		var p policyengine.Policy
		if i%2 == 0 {
			p = pol(fmt.Sprintf("rego-%d", i), effect, int32(i%50), res, []string{act}, []string{"user", "agent"}, policyengine.Rego,
				fmt.Sprintf(`package p%d
match if {
	input.resource.attributes.metadata.project == "p-%d"
	input.principal.kind in {"user", "agent"}
}`, i, i))
		} else {
			p = pol(fmt.Sprintf("jl-%d", i), effect, int32(i%50), res, []string{act}, []string{"user"}, policyengine.JSONLogic,
				fmt.Sprintf(`{"and": [{"==": [{"var": "resource.attributes.metadata.project"}, "p-%d"]}, {"in": ["user", {"var": "principal.roles"}]}]}`, i))
		}
		ps = append(ps, p)
	}
	// The request's own pair gets a Rego attribute rule that matches.
	ps[len(ps)-1] = pol("secret", policyengine.Deny, 500, "memory", []string{"read"}, nil, policyengine.Rego,
		`package secret
match if input.resource.attributes.metadata.classification == "secret"`)
	return ps
}

func benchInput(i int) policyengine.Input {
	return policyengine.Input{
		Principal: policyengine.Principal{IdentityID: alice, TenantID: tenantA, Kind: "user", Roles: []string{"user"}, Scopes: []string{"read", "write"}},
		Action:    "read",
		Resource: policyengine.Resource{Type: "memory", ID: fmt.Sprintf("m-%d", i%64), OwnerID: alice,
			Attributes: map[string]any{"metadata": map[string]any{"classification": "internal", "project": "x"}}},
	}
}

func benchDecide(b *testing.B, cacheSize int) {
	telemetry.TuneGC() // measure at the collector pace the binary runs with
	s, err := policyengine.Compile(context.Background(), tenantA, hundredPolicies(), policyengine.Options{CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	if s.Len() != 100 {
		b.Fatalf("set has %d policies", s.Len())
	}
	ins := make([]policyengine.Input, 64)
	for i := range ins {
		ins[i] = benchInput(i)
		if !s.Decide(context.Background(), ins[i], false).Allow {
			b.Fatal("expected allow")
		}
	}
	ctx := context.Background()
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		s.Decide(ctx, ins[i%len(ins)], false)
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	if n := len(durations); n > 0 {
		b.ReportMetric(float64(durations[n/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(durations[n*99/100].Nanoseconds())/1e3, "p99-µs")
	}
}

// BenchmarkDecideUncached: every decision evaluates the policies in scope.
func BenchmarkDecideUncached(b *testing.B) { benchDecide(b, -1) }

// BenchmarkDecideCached: repeats of 64 distinct requests, served by the cache.
func BenchmarkDecideCached(b *testing.B) { benchDecide(b, 0) }

// BenchmarkAuthorize is the interceptor's path: tenant lookup, input from the
// principal and the declared access, a decision (cached after the first).
func BenchmarkAuthorize(b *testing.B) {
	policies := hundredPolicies()
	engine := policyengine.NewAuthorizer(policyengine.LoaderFunc(func(context.Context, string) ([]policyengine.Policy, error) {
		return policies, nil
	}), policyengine.AuthorizerConfig{})
	p := &auth.Principal{TenantID: tenantA, IdentityID: alice, Kind: "user", Roles: []string{"user"}, Scopes: []string{"read", "write"}}
	a := authz.Access{Method: "/manushya.memory.v1.MemoryService/GetMemory", Permission: "memory.read", Resource: "memory", Action: "read"}
	ctx := context.Background()
	if err := engine.Authorize(ctx, p, a); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := engine.Authorize(ctx, p, a); err != nil {
			b.Fatal(err)
		}
	}
}
