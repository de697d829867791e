package prometheus_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// metricName finds the metric names in a PromQL expression: ours (manushya_*) and
// the gRPC middleware's (grpc_server_*). Recording rules (manushya:...) are checked
// against the file's own record: entries.
var (
	metricName   = regexp.MustCompile(`\b(?:manushya|grpc_server)_[a-z0-9_]+\b`)
	recordedName = regexp.MustCompile(`\bmanushya:[a-z0-9_:]+\b`)
	fqName       = regexp.MustCompile(`fqName: "([^"]+)"`)
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string `yaml:"record"`
			Alert  string `yaml:"alert"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// defined is every metric name the code defines: string literals of the form
// "manushya_..." in non-test Go files, plus the gRPC middleware's server metrics
// as it describes them.
func defined(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	literal := regexp.MustCompile(`"(manushya_[a-z0-9_]+)"`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "pb") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
		return nil
	})
	require.NoError(t, err)
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram()).Describe(ch)
		close(ch)
	}()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// known reports whether name, or the histogram it is a series of, is defined.
func known(defs map[string]bool, name string) bool {
	if defs[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && defs[base] {
			return true
		}
	}
	return false
}

func TestRulesAndDashboardUseDefinedMetrics(t *testing.T) {
	t.Parallel()
	defs := defined(t)
	require.True(t, defs["grpc_server_handled_total"], "the gRPC middleware's metrics are described")

	raw, err := os.ReadFile("alerts.yaml")
	require.NoError(t, err)
	var rules ruleFile
	require.NoError(t, yaml.Unmarshal(raw, &rules))
	recorded := map[string]bool{}
	var exprs []string
	where := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			exprs = append(exprs, r.Expr)
			where[r.Expr] = "alerts.yaml " + g.Name + " " + r.Alert + r.Record
		}
	}
	require.NotEmpty(t, exprs)

	raw, err = os.ReadFile("../grafana/manushya.json")
	require.NoError(t, err)
	var dash dashboard
	require.NoError(t, json.Unmarshal(raw, &dash))
	panels := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			where[tg.Expr] = "dashboard panel " + p.Title
			panels++
		}
	}
	require.NotZero(t, panels)

	var missing []string
	for _, e := range exprs {
		// Recorded names contain metric-like words ("manushya:grpc_server_errors:rate5m").
		for _, name := range metricName.FindAllString(recordedName.ReplaceAllString(e, " "), -1) {
			if !known(defs, name) {
				missing = append(missing, name+" in "+where[e])
			}
		}
		for _, name := range recordedName.FindAllString(e, -1) {
			if !recorded[name] {
				missing = append(missing, name+" (no record: rule) in "+where[e])
			}
		}
	}
	slices.Sort(missing)
	require.Empty(t, slices.Compact(missing), "metrics queried but defined nowhere in the code")
}
