package policyengine_test

import (
	"context"
	"testing"

	"github.com/manushya-ai/manushya/pkg/policyengine"
)

// FuzzJSONLogic: any source is either refused with a SourceError or compiles and
// decides without panicking.
func FuzzJSONLogic(f *testing.F) {
	for _, s := range []string{
		`{"==": [{"var": "action"}, "read"]}`,
		`{"and": [{"in": ["user", {"var": "principal.roles"}]}, {"!": {"var": "resource.attributes.x"}}]}`,
		`{"/": [1, 0]}`, `{"substr": ["abc", -5, 99]}`, `{"reduce": [[1,2], {"+": [{"var": "current"}, 1]}, 0]}`,
		`[1, {"var": ""}]`, `null`, `{"var": ["a", "b", "c"]}`,
	} {
		f.Add(s)
	}
	in := benchInput(1)
	f.Fuzz(func(t *testing.T, src string) {
		p := pol("f", policyengine.Allow, 1, "*", []string{"*"}, nil, policyengine.JSONLogic, src)
		if err := policyengine.Validate(p, policyengine.Options{}); err != nil {
			return
		}
		s, err := policyengine.Compile(context.Background(), tenantA, []policyengine.Policy{p}, policyengine.Options{CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		s.Decide(context.Background(), in, true)
	})
}

// FuzzRego: any module is refused or compiles and decides within the timeout.
func FuzzRego(f *testing.F) {
	for _, s := range []string{
		"package x\nmatch if input.action == \"read\"",
		"package x\nmatch if count(input.principal.roles) > 0\nreason := \"r\"",
		"package x\nmatch if data.x",
		"package x\nmatch if { some r in input.principal.roles; startswith(r, \"a\") }",
	} {
		f.Add(s)
	}
	in := benchInput(1)
	f.Fuzz(func(t *testing.T, src string) {
		p := pol("f", policyengine.Allow, 1, "*", []string{"*"}, nil, policyengine.Rego, src)
		if err := policyengine.Validate(p, policyengine.Options{}); err != nil {
			return
		}
		s, err := policyengine.Compile(context.Background(), tenantA, []policyengine.Policy{p}, policyengine.Options{CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		s.Decide(context.Background(), in, true)
	})
}
