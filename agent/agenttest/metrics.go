package agenttest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Series is one row of the metrics table in docs/operations.md.
type Series struct {
	Name   string
	Type   string   // counter, gauge, histogram
	Labels []string // without the quotes
	When   string   // "always", "per service port", "with `--git-url`", …
}

// DocsPath is the path of a file under docs/ in this module's source.
func DocsPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", name)
}

// DocumentedSeries reads the metrics table of docs/operations.md: the
// table whose header starts with "| series |". The tests hold /metrics
// and the Grafana dashboard to it, so the table is the one list.
func DocumentedSeries() ([]Series, error) {
	path := DocsPath("operations.md")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Series
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "| series |"):
			in = true
		case !in:
		case !strings.HasPrefix(line, "|"):
			in = false
		case strings.HasPrefix(line, "| ---"):
		default:
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) != 5 {
				return nil, fmt.Errorf("%s: metrics row %q: want 5 cells", path, line)
			}
			s := Series{Name: strings.Trim(strings.TrimSpace(cells[0]), "`"), Type: strings.TrimSpace(cells[1]), When: strings.TrimSpace(cells[3])}
			for _, l := range strings.Split(cells[2], ",") {
				if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
					s.Labels = append(s.Labels, l)
				}
			}
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no metrics table (header \"| series |\")", path)
	}
	return out, nil
}

// CheckMetrics holds a /metrics page to the documented series: each one
// that want selects is on the page with its type and with every label
// on a sample, and every cuelet_ family on the page is documented.
func CheckMetrics(page string, docs []Series, want func(Series) bool) error {
	types := map[string]string{}     // family → type, from "# TYPE" lines
	samples := map[string][]string{} // family → its sample lines
	for _, line := range strings.Split(page, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	for _, line := range strings.Split(page, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(strings.Fields(line)[0], "{")
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if fam := strings.TrimSuffix(name, suffix); (suffix == "" || fam != name) && types[fam] != "" {
				samples[fam] = append(samples[fam], line)
				break
			}
		}
	}
	var problems []string
	documented := map[string]bool{}
	for _, s := range docs {
		documented[s.Name] = true
		if !want(s) {
			continue
		}
		switch {
		case types[s.Name] == "":
			problems = append(problems, s.Name+": documented, not on the page")
		case types[s.Name] != s.Type:
			problems = append(problems, fmt.Sprintf("%s: type %s, documented as %s", s.Name, types[s.Name], s.Type))
		case len(samples[s.Name]) == 0:
			problems = append(problems, s.Name+": no sample")
		default:
			for _, l := range s.Labels {
				if !strings.Contains(samples[s.Name][0], l+`="`) {
					problems = append(problems, fmt.Sprintf("%s: no label %s in %s", s.Name, l, samples[s.Name][0]))
				}
			}
		}
	}
	for fam := range types {
		if strings.HasPrefix(fam, "cuelet_") && !documented[fam] {
			problems = append(problems, fam+": on the page, not documented in docs/operations.md")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("/metrics against docs/operations.md:\n%s", strings.Join(problems, "\n"))
	}
	return nil
}
