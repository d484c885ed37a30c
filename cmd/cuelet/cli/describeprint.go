package cli

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cuelet/cuelet/agent"
)

// describeTarget is what describe shows: a replica or a service.
type describeTarget struct {
	pod     *agent.PodStatus
	service *agent.ServiceStatus
}

// The kinds describe takes before names, as kubectl's do.
var (
	podKinds     = []string{"pod", "pods", "po", "replica", "replicas"}
	serviceKinds = []string{"service", "services", "svc"}
)

// describeTargets finds what the arguments name, in their order: with a
// kind first (pod or service, as kubectl describe takes one), only that
// kind; otherwise a replica, every replica of a pod definition, or a
// service, all that match. It returns the names that matched nothing.
func describeTargets(rep *agent.Report, args []string) ([]describeTarget, []string) {
	pods, services := true, true
	if len(args) > 1 {
		switch {
		case slices.Contains(podKinds, args[0]):
			services, args = false, args[1:]
		case slices.Contains(serviceKinds, args[0]):
			pods, args = false, args[1:]
		}
	}
	var out []describeTarget
	var missing []string
	for _, name := range args {
		found := false
		for i := range rep.Pods {
			p := &rep.Pods[i]
			if pods && (p.Replica == name || p.Pod == name && !slices.ContainsFunc(rep.Pods, func(q agent.PodStatus) bool { return q.Replica == name })) {
				out, found = append(out, describeTarget{pod: p}), true
			}
		}
		for i := range rep.Services {
			if services && rep.Services[i].Name == name {
				out, found = append(out, describeTarget{service: &rep.Services[i]}), true
			}
		}
		if !found {
			missing = append(missing, name)
		}
	}
	return out, missing
}

// printDescribe writes each target as kubectl describe does: fields, then
// the events about it; targets are separated by a blank line.
func printDescribe(w io.Writer, rep *agent.Report, targets []describeTarget, now time.Time, loc *time.Location) {
	for i, t := range targets {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if t.pod != nil {
			describePod(tw, rep, t.pod, now, loc)
		} else {
			describeService(tw, rep, t.service, now)
		}
		tw.Flush()
	}
}

func describePod(w io.Writer, rep *agent.Report, p *agent.PodStatus, now time.Time, loc *time.Location) {
	fmt.Fprintf(w, "Name:\t%s\n", p.Replica)
	fmt.Fprintf(w, "Pod:\t%s\n", p.Pod)
	fmt.Fprintf(w, "Unit:\t%s\n", p.Unit)
	fmt.Fprintf(w, "Created:\t%s\n", timeText(p.Created, now, loc))
	fmt.Fprintf(w, "IP:\t%s\n", dash(p.IP))
	fmt.Fprintf(w, "Status:\t%s\n", dash(p.State))
	if p.Reason != "" {
		fmt.Fprintf(w, "Reason:\t%s\n", p.Reason)
	}
	if !p.NextRestart.IsZero() {
		fmt.Fprintf(w, "Next restart:\t%s\n", timeText(p.NextRestart, now, loc))
	}
	if p.Error != "" {
		fmt.Fprintf(w, "Error:\t%s\n", p.Error)
	}
	fmt.Fprintf(w, "Phase:\t%s\n", dash(p.Phase))
	fmt.Fprintf(w, "Ready:\t%t (%d/%d containers)\n", p.Ready, p.ReadyContainers(), len(p.Containers))
	if p.Condition != "" {
		fmt.Fprintf(w, "Not serving:\t%s\n", p.Condition)
	}
	fmt.Fprintf(w, "Restarts:\t%d\n", p.Restarts)
	fmt.Fprintln(w, "Containers:")
	for _, c := range p.Containers {
		fmt.Fprintf(w, "  %s:\n", c.Name)
		state := cmp.Or(c.State, "missing")
		if c.State == "exited" || c.State == "stopped" {
			state += " (exit code " + strconv.Itoa(c.ExitCode) + ")"
		}
		fmt.Fprintf(w, "    State:\t%s\n", state)
		if !c.StartedAt.IsZero() {
			fmt.Fprintf(w, "    Started:\t%s\n", timeText(c.StartedAt, now, loc))
		}
		fmt.Fprintf(w, "    Ready:\t%t\n", c.Ready)
		fmt.Fprintf(w, "    Restarts:\t%d\n", c.Restarts)
		if c.Probe != "" {
			fmt.Fprintf(w, "    Readiness:\t%s\n", c.Probe)
		}
	}
	fmt.Fprintf(w, "Endpoints:\t%s\n", podEndpointsText(rep, p))
	for _, r := range rep.Rollouts {
		if r.Pod == p.Pod {
			fmt.Fprintf(w, "Rollout:\t%s: %s\n", r.State, r.Reason)
		}
	}
	printEvents(w, rep.Events, "pod", p.Replica, now)
}

// podEndpointsText lists the service ports the replica is an endpoint of,
// or says it is in none.
func podEndpointsText(rep *agent.Report, p *agent.PodStatus) string {
	var in []string
	for _, s := range rep.Services {
		for _, port := range s.Ports {
			for _, ep := range port.Endpoints {
				if host, _, err := net.SplitHostPort(ep); err == nil && p.IP != "" && host == p.IP {
					in = append(in, fmt.Sprintf("%s %s -> %s", s.Name, portText(port), ep))
				}
			}
		}
	}
	if len(in) == 0 {
		return "<none>"
	}
	return strings.Join(in, ", ")
}

func describeService(w io.Writer, rep *agent.Report, s *agent.ServiceStatus, now time.Time) {
	fmt.Fprintf(w, "Name:\t%s\n", s.Name)
	fmt.Fprintf(w, "Unit:\t%s\n", s.Unit)
	fmt.Fprintf(w, "Portal:\t%s\n", dash(s.PortalIP))
	if s.Error != "" {
		fmt.Fprintf(w, "Error:\t%s\n", s.Error)
	}
	for _, p := range s.Ports {
		fmt.Fprintf(w, "Port:\t%s\n", strings.TrimSpace(p.Name+" "+strconv.Itoa(p.Port)+"/"+p.Protocol))
		if p.ExternalPort != 0 {
			fmt.Fprintf(w, "External port:\t%d/%s\n", p.ExternalPort, p.Protocol)
		}
		eps := strings.Join(p.Endpoints, ",")
		if eps == "" {
			eps = "<none>"
		}
		fmt.Fprintf(w, "Endpoints:\t%s\n", eps)
	}
	printEvents(w, rep.Events, "service", s.Name, now)
}

// printEvents writes the events about one object as kubectl describe's
// Events: section: type, age (with the count of a repeated problem) and
// message, oldest first.
func printEvents(w io.Writer, events []agent.Event, object, name string, now time.Time) {
	var mine []agent.Event
	for _, e := range events {
		if e.Object == object && e.Name == name {
			mine = append(mine, e)
		}
	}
	if len(mine) == 0 {
		fmt.Fprintln(w, "Events:\t<none>")
		return
	}
	fmt.Fprintln(w, "Events:")
	fmt.Fprintln(w, "  Type\tAge\tMessage")
	fmt.Fprintln(w, "  ----\t---\t-------")
	for _, e := range mine {
		when := age(e.Time, now)
		if e.Count > 1 {
			when = fmt.Sprintf("%s (x%d over %s)", age(e.LastTime, now), e.Count, age(e.Time, now))
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", e.Type, when, e.Message)
	}
}

// timeText is a time as kubectl describe prints one, with how long ago
// (or how soon) it is.
func timeText(t, now time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	rel := age(t, now) + " ago"
	if t.After(now) {
		rel = "in " + age(now, t)
	}
	return t.In(loc).Format(time.RFC1123Z) + " (" + rel + ")"
}
