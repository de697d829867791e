package deprules

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const mod = "github.com/manushya-ai/manushya"

type pkg struct {
	ImportPath string
	Imports    []string
	Module     *struct{ Path string }
}

func listPackages(t *testing.T, patterns ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json", "-test"}, patterns...)...)
	cmd.Dir = "../.."
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	var pkgs []pkg
	dec := json.NewDecoder(&out)
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// base strips the " [pkg.test]" suffix go list adds to test variants.
func base(path string) string {
	path, _, _ = strings.Cut(path, " ")
	return strings.TrimSuffix(strings.TrimSuffix(path, ".test"), "_test")
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func serviceOf(path string) string {
	rest, ok := strings.CutPrefix(path, mod+"/services/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	var problems []string
	check := func(from, to, rule string) {
		problems = append(problems, from+" imports "+to+": "+rule)
	}
	for _, p := range listPackages(t, "./...", "./pkg/pb/...") {
		from := base(p.ImportPath)
		testOnly := p.ImportPath != from
		for _, imp := range p.Imports {
			to := base(imp)
			if !under(to, mod) {
				continue
			}
			switch {
			case under(from, mod+"/pkg/pb"):
				if !under(to, mod+"/pkg/pb") {
					check(from, to, "pkg/pb imports nothing of ours")
				}
			case under(from, mod+"/pkg"):
				if under(to, mod+"/services") || under(to, mod+"/gateway") || under(to, mod+"/cmd") {
					check(from, to, "pkg/ never imports services/, gateway/ or cmd/")
				}
			case under(from, mod+"/gateway"):
				if under(to, mod+"/services") || under(to, mod+"/cmd") {
					check(from, to, "the gateway dials services, it never imports them")
				}
			case under(from, mod+"/services"):
				if s := serviceOf(to); s != "" && s != serviceOf(from) {
					check(from, to, "a service never imports another service")
				}
				// A service's own tests may put the REST edge in front of it to run
				// their cases over REST; its code never imports the gateway.
				if (under(to, mod+"/gateway") && !testOnly) || under(to, mod+"/cmd") {
					check(from, to, "services never import the gateway or cmd")
				}
			case under(from, mod+"/cmd/manushya"):
			default:
				if under(to, mod+"/services") || under(to, mod+"/gateway") {
					check(from, to, "only cmd/manushya imports services and the gateway")
				}
			}
		}
	}
	require.Empty(t, problems)
}
