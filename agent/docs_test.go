package agent_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/agent/agenttest"
)

func documented(t *testing.T) map[string]agenttest.Series {
	t.Helper()
	docs, err := agenttest.DocumentedSeries()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]agenttest.Series{}
	for _, s := range docs {
		if _, dup := out[s.Name]; dup {
			t.Errorf("%s is documented twice", s.Name)
		}
		out[s.Name] = s
	}
	return out
}

// The table follows Prometheus' naming conventions
// (prometheus.io/docs/practices/naming): counters end in _total and
// nothing else does, info series are gauges ending in _info, units are
// base units spelt out.
func TestDocumentedSeries_follow_the_Prometheus_naming_conventions(t *testing.T) {
	name := regexp.MustCompile(`^cuelet_[a-z][a-z0-9_]*[a-z0-9]$`)
	for _, s := range documented(t) {
		if !name.MatchString(s.Name) {
			t.Errorf("%s: not a cuelet_ snake_case name", s.Name)
		}
		if !slices.Contains([]string{"counter", "gauge", "histogram"}, s.Type) {
			t.Errorf("%s: type %q", s.Name, s.Type)
		}
		if (s.Type == "counter") != strings.HasSuffix(s.Name, "_total") {
			t.Errorf("%s: a %s; only counters end in _total", s.Name, s.Type)
		}
		if strings.HasSuffix(s.Name, "_info") && s.Type != "gauge" {
			t.Errorf("%s: info series are gauges", s.Name)
		}
		for _, bad := range []string{"_ms", "_milliseconds", "_kb", "_mb", "_percent"} {
			if strings.Contains(s.Name, bad+"_") || strings.HasSuffix(s.Name, bad) {
				t.Errorf("%s: use base units (seconds, bytes, ratios)", s.Name)
			}
		}
		if s.When == "" {
			t.Errorf("%s: no when", s.Name)
		}
	}
}

var seriesName = regexp.MustCompile(`\bcuelet_[a-z0-9_]+`)

// exprs collects the PromQL of a dashboard: every target's expr and the
// templating variables' queries.
func exprs(v any, key string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			exprs(x, k, out)
		}
	case []any:
		for _, x := range v {
			exprs(x, key, out)
		}
	case string:
		if key == "expr" || (key == "query" || key == "definition") && strings.Contains(v, "(") {
			*out = append(*out, v)
		}
	}
}

func TestGrafanaDashboard_is_built_on_the_documented_series(t *testing.T) {
	docs := documented(t)
	b, err := os.ReadFile(agenttest.DocsPath("grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, k := range []string{"title", "uid", "panels", "schemaVersion"} {
		if dash[k] == nil {
			t.Errorf("dashboard lacks %q", k)
		}
	}
	var all []string
	exprs(dash, "", &all)
	if len(all) == 0 {
		t.Fatal("no expr in the dashboard")
	}
	used := map[string]bool{}
	for _, e := range all {
		names := seriesName.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("expr %q names no cuelet_ series", e)
		}
		for _, n := range names {
			fam := n
			if _, ok := docs[n]; !ok {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if f := strings.TrimSuffix(n, suffix); f != n && docs[f].Type == "histogram" {
						fam = f
					}
				}
			}
			if _, ok := docs[fam]; !ok {
				t.Errorf("expr %q: %s is not documented in docs/operations.md", e, n)
				continue
			}
			used[fam] = true
		}
	}
	for name := range docs {
		if !used[name] {
			t.Errorf("%s is documented but no panel shows it", name)
		}
	}
}
