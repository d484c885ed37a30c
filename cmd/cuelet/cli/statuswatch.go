package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cuelet/cuelet/agent"
)

// statusOptions are status's flags and arguments.
type statusOptions struct {
	Output string   // "", wide, json or yaml
	Watch  bool     // print again on every change
	Names  []string // filter, as `kubectl get NAME...`
}

// reportSource fetches the agent's latest report.
type reportSource func(ctx context.Context) (*agent.Report, error)

// showStatus prints the report once or, with Watch, again whenever it
// changes, as `kubectl get -w`: the agent answers with its latest report,
// so watching is polling it on every tick, which costs the agent a JSON
// encoding a second and needs no stream it would have to keep. It stops
// when ctx ends or tick closes. Names that match nothing are an error,
// after what they did match is printed.
func showStatus(ctx context.Context, w io.Writer, o statusOptions, fetch reportSource, now func() time.Time, tick <-chan time.Time) error {
	var last string
	for first := true; ; first = false {
		rep, err := fetchOnce(ctx, fetch)
		if err != nil {
			return err
		}
		rep, missing := filterReport(rep, o.Names)
		if len(missing) > 0 && first {
			if len(missing) < len(o.Names) {
				if err := printReport(w, rep, o.Output, now()); err != nil {
					return err
				}
			}
			return notFound(missing)
		}
		if key := changeKey(rep); key != last {
			if !first {
				printSeparator(w, o.Output)
			}
			if err := printReport(w, rep, o.Output, now()); err != nil {
				return err
			}
			last = key
		}
		if !o.Watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-tick:
			if !ok {
				return nil
			}
		}
	}
}

func fetchOnce(ctx context.Context, fetch reportSource) (*agent.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return fetch(ctx)
}

func notFound(names []string) error {
	return fmt.Errorf("not found: %s (no such pod replica, pod, service or unit)", strings.Join(names, ", "))
}

// changeKey is what a change is judged on: the report without the time
// and length of its pass, which change on every pass, and without the
// events, which repeat a persistent problem's count on every pass. AGE
// moving on is no change either: it is computed when printing.
func changeKey(rep *agent.Report) string {
	r := *rep
	r.Time, r.Duration, r.Events = time.Time{}, 0, nil
	b, _ := json.Marshal(r)
	return string(b)
}

// printSeparator goes between two prints of a watch: a blank line between
// tables, a document marker between YAML documents; JSON objects follow
// each other as a stream (jq reads them so).
func printSeparator(w io.Writer, output string) {
	switch output {
	case outputYAML:
		fmt.Fprintln(w, "---")
	case outputJSON:
	default:
		fmt.Fprintln(w)
	}
}
