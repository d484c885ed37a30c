package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cuelet/cuelet/agent"
)

func statusCommand() *Command {
	return &Command{
		Name: "status",
		Short: `Show the running agent's pods, services and units, from its local API
socket <run-dir>/cuelet.sock. Exits 1 when no agent answers.`,
		Setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			// Every agent flag is accepted, so that one set of flags
			// serves every command (SPEC §7); only --run-dir is used.
			var (
				f      AgentFlags
				asJSON bool
			)
			f.Register(fs, env)
			fs.BoolVar(&asJSON, "json", false, "print the agent's report as JSON")
			return func(ctx context.Context, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				rep, err := agent.FetchStatus(ctx, f.RunDir)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(env.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				printStatus(env.Stdout, rep, time.Now())
				return nil
			}
		},
	}
}

// printStatus writes the report as three tables, like kubectl get.
func printStatus(w io.Writer, rep *agent.Report, now time.Time) {
	if rep.Partial {
		fmt.Fprintln(w, "first sync pass under way; as found before it changed anything:")
	}
	printSource(w, rep.Source)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tSTATE\tREADY\tRESTARTS\tAGE\tUNIT")
	for _, p := range rep.Pods {
		state := p.State
		if p.Reason != "" {
			state += " (" + p.Reason
			if !p.NextRestart.IsZero() {
				state += ", next try " + p.NextRestart.Format(time.TimeOnly) + ", in " + age(now, p.NextRestart)
			}
			state += ")"
		}
		if p.Error != "" {
			state += " (" + p.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%d\t%s\t%s\n", p.Replica, state, p.Ready, p.Restarts, age(p.Created, now), p.Unit)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SERVICE\tPORTAL\tPORTS\tEXTERNAL\tENDPOINTS")
	for _, s := range rep.Services {
		var ports, ext []string
		for _, p := range s.Ports {
			ports = append(ports, strconv.Itoa(p.Port)+"/"+p.Protocol)
			if p.ExternalPort != 0 {
				ext = append(ext, strconv.Itoa(p.ExternalPort)+"/"+p.Protocol)
			}
		}
		eps := strings.Join(s.Endpoints, ",")
		if eps == "" {
			eps = "<none>"
		}
		if s.Error != "" {
			eps += " (" + s.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.PortalIP, strings.Join(ports, ","), dash(strings.Join(ext, ",")), eps)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "UNIT\tSTATE\tPROBLEM")
	for _, u := range rep.Units {
		state, problem := "valid", ""
		if !u.Valid {
			state = "invalid"
			if u.LastGood {
				state = "invalid (last good kept)"
			}
			if len(u.Problems) > 0 {
				problem = u.Problems[0]
				if n := len(u.Problems) - 1; n > 0 {
					problem += fmt.Sprintf(" (+%d more)", n)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.ID, state, problem)
	}
	tw.Flush()
	for _, r := range rep.Rollouts {
		fmt.Fprintln(w, r)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is a duration the way kubectl prints it: 45s, 12m, 3h, 5d.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
