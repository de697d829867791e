package policyengine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// refusedBuiltins have side effects, reach the network, are not deterministic (a
// cached decision must not depend on the clock or on chance) or allocate without
// bound in a single call, where the evaluation timeout cannot interrupt them.
var refusedBuiltins = []string{
	"http.send",
	"net.lookup_ip_addr",
	"opa.runtime",
	"rand.intn",
	"uuid.rfc4122",
	"time.now_ns",
	"trace",
	"internal.print",
	"print",
	"numbers.range",
	"numbers.range_step",
	"providers.aws.sign_req",
	"io.jwt.decode_verify",
	"rego.parse_module",
}

// sandboxCapabilities is what policies may use: this OPA version's built-ins minus the
// refused ones, and no network at all.
var sandboxCapabilities = func() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
		return slices.Contains(refusedBuiltins, b.Name)
	})
	caps.AllowNet = []string{}
	return caps
}()

// allowedImports are the only imports a policy may declare: future keywords and the
// rego.v1 marker. Imports of data would reach outside the policy.
func allowedImport(path ast.Ref) bool {
	s := path.String()
	return s == "rego.v1" || s == "future.keywords" || strings.HasPrefix(s, "future.keywords.") ||
		s == "input" || strings.HasPrefix(s, "input.")
}

// checkSandbox refuses references to data (other policies, or documents a policy has
// no business reading) and imports outside input. Rules of the policy's own module
// are referred to by their bare names, which are not data references.
func checkSandbox(m *ast.Module) error {
	for _, imp := range m.Imports {
		path, ok := imp.Path.Value.(ast.Ref)
		if !ok || !allowedImport(path) {
			return positioned(imp.Location, "sandbox_error", fmt.Sprintf("import %s is not allowed: policies read only input", imp.Path))
		}
	}
	var err error
	for _, r := range m.Rules {
		ast.WalkRefs(r, func(ref ast.Ref) bool {
			if err != nil {
				return true
			}
			if ref.HasPrefix(ast.DefaultRootRef) {
				err = positioned(ref[0].Location, "sandbox_error", fmt.Sprintf("%s: policies may not read data, only input", ref))
				return true
			}
			return false
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// positioned formats a problem at a source location as "<line>:<column>: code: message".
func positioned(loc *ast.Location, code, msg string) error {
	row, col := 1, 1
	if loc != nil {
		row, col = loc.Row, loc.Col
	}
	return &SourceError{Description: fmt.Sprintf("%d:%d: %s: %s", row, col, code, msg)}
}

// SourceError is a policy source that does not compile or breaks a sandbox rule. Its
// description starts with the position: "<line>:<column>: " for Rego, the JSON path
// for JSON Logic.
type SourceError struct {
	Description string
}

func (e *SourceError) Error() string { return e.Description }

// regoErrors turns OPA's errors into one SourceError naming the first problem's
// position and, after it, the others.
func regoErrors(err error) error {
	var errs ast.Errors
	switch e := err.(type) { //nolint:errorlint // OPA returns these unwrapped.
	case ast.Errors:
		errs = e
	case *ast.Error:
		errs = ast.Errors{e}
	default:
		return &SourceError{Description: "1:1: " + err.Error()}
	}
	if len(errs) == 0 {
		return &SourceError{Description: "1:1: invalid policy"}
	}
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, positioned(e.Location, e.Code, e.Message).Error())
	}
	return &SourceError{Description: strings.Join(parts, "; ")}
}
