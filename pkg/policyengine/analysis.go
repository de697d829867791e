package policyengine

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// reads says which parts of input a policy's condition can look at, found by
// reading its source once at compile time. It decides two costs a request pays
// only when some policy in scope needs them: the resource of every listed row is
// decided on its own (readsRow), and the principal's identity claims are loaded
// (readsClaims). The analysis errs towards "reads": anything it cannot follow (the
// whole input, a computed key, an import of input) counts as reading everything.
type reads struct {
	row    bool // input.resource beyond its type: id, owner_id, tenant_id, attributes
	claims bool // input.principal.claims or input.principal.acts_for
}

func (r reads) or(o reads) reads { return reads{row: r.row || o.row, claims: r.claims || o.claims} }

var readsAll = reads{row: true, claims: true}

// regoReads finds the input references of a module.
func regoReads(m *ast.Module) reads {
	var out reads
	for _, imp := range m.Imports {
		// "import input.resource as r" hides later references behind an alias.
		if path, ok := imp.Path.Value.(ast.Ref); ok && path.HasPrefix(ast.InputRootRef) {
			return readsAll
		}
	}
	ast.WalkRefs(m, func(ref ast.Ref) bool {
		if ref.HasPrefix(ast.InputRootRef) {
			out = out.or(pathReads(refPath(ref)))
		}
		return false
	})
	// A bare "input" term (passed to a function, say) is a ref of length one and is
	// seen above; a "with input as" replaces input and reads nothing new.
	return out
}

// refPath is the ref's static path below input; a computed segment ends it with "*".
func refPath(ref ast.Ref) []string {
	path := make([]string, 0, len(ref)-1)
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			return append(path, "*")
		}
		path = append(path, string(s))
	}
	return path
}

// pathReads classifies one path below input ("resource", "attributes", ...).
func pathReads(path []string) reads {
	if len(path) == 0 {
		return readsAll
	}
	switch path[0] {
	case "action":
		return reads{}
	case "resource":
		if len(path) >= 2 && path[1] == "type" {
			return reads{}
		}
		return reads{row: true}
	case "principal":
		if len(path) == 1 {
			return reads{claims: true}
		}
		switch path[1] {
		case "claims", "acts_for", "*":
			return reads{claims: true}
		}
		return reads{}
	}
	// A computed first key, or one input does not have (which reads nothing, but
	// costs nothing to treat as everything).
	return readsAll
}

// jsonLogicReads finds the variables a JSON Logic rule reads. Inside the array
// operators (some, all, none, filter, map, reduce) a var names a field of the
// element, which the classification of unknown first keys already counts as
// everything.
func jsonLogicReads(rule any) reads {
	var out reads
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for op, args := range x {
				switch op {
				case "var":
					out = out.or(varReads(args))
				case "missing", "missing_some":
					out = out.or(missingReads(args))
				}
				walk(args)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(rule)
	return out
}

func varReads(args any) reads {
	if list, ok := args.([]any); ok {
		if len(list) == 0 {
			return readsAll
		}
		args = list[0]
	}
	s, ok := args.(string)
	if !ok {
		// A computed name ({"var": {"cat": ...}}) or a number.
		return readsAll
	}
	if s == "" {
		return readsAll
	}
	return pathReads(strings.Split(s, "."))
}

func missingReads(args any) reads {
	var out reads
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = out.or(varReads(x))
		case []any:
			for _, e := range x {
				walk(e)
			}
		case float64:
			// missing_some's count
		default:
			out = readsAll
		}
	}
	walk(args)
	return out
}
