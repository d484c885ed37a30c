package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/cuelet/cuelet/agent"
)

// The output formats of status, named as kubectl's -o names them.
const (
	outputTable = ""
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

func checkOutput(o string) error {
	switch o {
	case outputTable, outputWide, outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: want wide, json or yaml", o)
}

// filterReport keeps what the names name, as `kubectl get NAME...` does:
// a pod replica, every replica of a pod definition, a service, or a unit
// with everything it defines. It returns the names that matched nothing.
// Errors of the node as a whole stay: they concern every object.
func filterReport(rep *agent.Report, names []string) (*agent.Report, []string) {
	if len(names) == 0 {
		return rep, nil
	}
	out := *rep
	// Empty, not nil: JSON gives [] for a kind that has nothing named.
	out.Pods, out.Services, out.Units = []agent.PodStatus{}, []agent.ServiceStatus{}, []agent.UnitStatus{}
	out.Rollouts, out.Events = nil, nil
	matched := map[string]bool{}
	named := map[string]bool{} // units named, whose pods and services all show
	units := map[string]bool{} // units shown: named, or of a pod or service shown
	want := func(candidates ...string) bool {
		hit := false
		for _, n := range names {
			if slices.Contains(candidates, n) {
				matched[n], hit = true, true
			}
		}
		return hit
	}
	for _, u := range rep.Units {
		if want(u.ID) {
			named[u.ID], units[u.ID] = true, true
		}
	}
	pods := map[string]bool{}
	for _, p := range rep.Pods {
		if want(p.Replica, p.Pod) || named[p.Unit] {
			out.Pods = append(out.Pods, p)
			pods[p.Pod], units[p.Unit] = true, true
		}
	}
	services := map[string]bool{}
	for _, s := range rep.Services {
		if want(s.Name) || named[s.Unit] {
			out.Services = append(out.Services, s)
			services[s.Name], units[s.Unit] = true, true
		}
	}
	for _, u := range rep.Units {
		if units[u.ID] {
			out.Units = append(out.Units, u)
		}
	}
	for _, r := range rep.Rollouts {
		if pods[r.Pod] || want(r.Pod) {
			out.Rollouts = append(out.Rollouts, r)
		}
	}
	for _, e := range rep.Events {
		aboutPod := e.Object == "pod" && slices.ContainsFunc(out.Pods, func(p agent.PodStatus) bool { return p.Replica == e.Name })
		if e.Object == "" || aboutPod || (e.Object == "service" && services[e.Name]) {
			out.Events = append(out.Events, e)
		}
	}
	var missing []string
	for _, n := range names {
		if !matched[n] {
			missing = append(missing, n)
		}
	}
	return &out, missing
}

// printReport writes the report in the output format.
func printReport(w io.Writer, rep *agent.Report, output string, now time.Time) error {
	switch output {
	case outputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case outputYAML:
		b, err := json.Marshal(rep)
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		_, err = w.Write(y)
		return err
	}
	printStatus(w, rep, output == outputWide, now)
	return nil
}

// printStatus writes the report as tables, like kubectl get: pods,
// services and units, each left out when it has no row, then the
// rollouts that wait and the problems of the pass.
func printStatus(w io.Writer, rep *agent.Report, wide bool, now time.Time) {
	if rep.Partial {
		fmt.Fprintln(w, "first sync pass under way; as found before it changed anything:")
	}
	printSource(w, rep.Source)
	if rep.ProxyMode != "" {
		fmt.Fprintf(w, "PROXY     %s\n", proxyModeText(rep.ProxyMode))
	}
	if rep.DNS != nil {
		fmt.Fprintf(w, "DNS       %s (<service>.svc.%s)\n", rep.DNS.Address, rep.DNS.Domain)
	}
	if rep.Source != nil || rep.ProxyMode != "" || rep.DNS != nil {
		fmt.Fprintln(w)
	}
	var tables []func(io.Writer)
	if len(rep.Pods) > 0 {
		tables = append(tables, func(tw io.Writer) { podTable(tw, rep.Pods, wide, now) })
	}
	if len(rep.Services) > 0 {
		tables = append(tables, func(tw io.Writer) { serviceTable(tw, rep.Services, wide) })
	}
	if len(rep.Units) > 0 {
		tables = append(tables, func(tw io.Writer) { unitTable(tw, rep.Units, wide) })
	}
	if len(tables) == 0 {
		fmt.Fprintln(w, "No pods, services or units.")
	}
	for i, table := range tables {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		table(tw)
		tw.Flush()
	}
	for _, r := range rep.Rollouts {
		fmt.Fprintln(w, r)
	}
	for _, s := range rep.Services {
		if s.Error != "" {
			fmt.Fprintf(w, "error: service %s: %s\n", s.Name, s.Error)
		}
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

// proxyModeText says what the mode means for someone about to restart
// the agent: whether the portals keep serving meanwhile.
func proxyModeText(m agent.ProxyMode) string {
	switch m {
	case agent.ProxyNftables:
		return string(m) + " (kernel rules: portals keep serving while the agent is away)"
	case agent.ProxyUserspace:
		return string(m) + " (the agent's process: portals stop while it is away)"
	}
	return string(m)
}

func podTable(w io.Writer, pods []agent.PodStatus, wide bool, now time.Time) {
	header := "NAME\tREADY\tSTATUS\tRESTARTS\tAGE"
	if wide {
		header += "\tIP\tPOD\tUNIT"
	}
	fmt.Fprintln(w, header)
	for _, p := range pods {
		fmt.Fprintf(w, "%s\t%d/%d\t%s\t%s\t%s", p.Replica, p.ReadyContainers(), len(p.Containers), podStatusWord(p), restarts(p, now), age(p.Created, now))
		if wide {
			fmt.Fprintf(w, "\t%s\t%s\t%s", dash(p.IP), p.Pod, p.Unit)
		}
		fmt.Fprintln(w)
	}
}

// podStatusWord is kubectl's STATUS: the reason a replica is held
// (CrashLoopBackOff), else podman's state of the pod.
func podStatusWord(p agent.PodStatus) string {
	return dash(cmp.Or(p.Reason, p.State))
}

// restarts is kubectl's RESTARTS column: the count, and how long ago the
// latest restart was ("3 (2m ago)").
func restarts(p agent.PodStatus, now time.Time) string {
	s := strconv.Itoa(p.Restarts)
	if p.Restarts == 0 {
		return s
	}
	var last time.Time
	for _, c := range p.Containers {
		if c.Restarts > 0 && c.StartedAt.After(last) {
			last = c.StartedAt
		}
	}
	if last.IsZero() {
		return s
	}
	return s + " (" + age(last, now) + " ago)"
}

func serviceTable(w io.Writer, services []agent.ServiceStatus, wide bool) {
	header := "NAME\tPORTAL\tPORTS\tENDPOINTS"
	if wide {
		header += "\tUNIT"
	}
	fmt.Fprintln(w, header)
	for _, s := range services {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, portText(p))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s", s.Name, dash(s.PortalIP), dash(strings.Join(ports, ",")), endpointsText(s, wide))
		if wide {
			fmt.Fprintf(w, "\t%s", s.Unit)
		}
		fmt.Fprintln(w)
	}
}

// portText is a port as kubectl get svc shows it: "80/TCP", or
// "80:30080/TCP" with an external port.
func portText(p agent.PortStatus) string {
	s := strconv.Itoa(p.Port)
	if p.ExternalPort != 0 {
		s += ":" + strconv.Itoa(p.ExternalPort)
	}
	return s + "/" + p.Protocol
}

// endpointsText lists the ready endpoints of every port, each once, as
// kubectl get endpoints does: the first three and "+ N more..." unless
// wide.
func endpointsText(s agent.ServiceStatus, wide bool) string {
	var eps []string
	for _, p := range s.Ports {
		for _, e := range p.Endpoints {
			if !slices.Contains(eps, e) {
				eps = append(eps, e)
			}
		}
	}
	if len(eps) == 0 {
		return "<none>"
	}
	const shown = 3
	if !wide && len(eps) > shown {
		return strings.Join(eps[:shown], ",") + fmt.Sprintf(" + %d more...", len(eps)-shown)
	}
	return strings.Join(eps, ",")
}

func unitTable(w io.Writer, units []agent.UnitStatus, wide bool) {
	fmt.Fprintln(w, "UNIT\tSTATE\tPROBLEMS")
	for _, u := range units {
		state, problem := "valid", ""
		if !u.Valid {
			state = "invalid"
			if u.LastGood {
				state = "invalid (last good kept)"
			}
		}
		switch n := len(u.Problems); {
		case n == 0:
		case wide || n == 1:
			problem = u.Problems[0].String()
			for _, p := range u.Problems[1:] {
				problem += "\n\t\t" + p.String()
			}
		default:
			problem = fmt.Sprintf("%s (+%d more)", u.Problems[0], n-1)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", u.ID, state, problem)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is a duration the way kubectl prints it (45s, 12m, 3h5m, 5d, 2y).
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t))
}
