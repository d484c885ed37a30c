package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/gitsource"
	"github.com/cuelet/cuelet/reconcile"
)

// Report is what one sync pass saw and did. The agent keeps the latest one
// for `cuelet status`, the metrics and systemd's STATUS= line.
type Report struct {
	Time time.Time `json:"time"`
	// Duration is how long the pass took; JSON holds it in seconds
	// (MarshalJSON), as people and Prometheus read durations.
	Duration time.Duration   `json:"duration"`
	Pods     []PodStatus     `json:"pods"`
	Services []ServiceStatus `json:"services"`
	Units    []UnitStatus    `json:"units"`
	// Actions are what the pass did, as plan lines ("+ pod web-1").
	Actions []string `json:"actions,omitempty"`
	// Rollouts are the rollouts that could not take their next step in
	// the pass: waiting for a replaced replica, or stuck (SPEC §9).
	Rollouts []RolloutStatus `json:"rollouts,omitempty"`
	// Errors are problems of the pass that are not a unit's: podman not
	// answering, the empty-directory guard, a pod podman refused. They
	// are the errors themselves (errors.Is and errors.As work on them)
	// until the report is encoded, which writes their messages.
	Errors ErrorList `json:"errors,omitempty"`
	// PodmanDown is set when podman could not be reached; the proxies then
	// keep serving from the last view.
	PodmanDown bool `json:"podmanDown,omitempty"`
	// Partial marks the report of the agent's first pass while it still
	// runs: units, pods and services as found before it changed anything.
	Partial bool `json:"partial,omitempty"`
	// Source is the git revision the pass read, with --git-url only.
	Source *SourceStatus `json:"source,omitempty"`
	// Events are what the agent did and met in its recent passes, oldest
	// first, for `cuelet describe`; a pass's own are also in Actions and
	// Errors.
	Events []Event `json:"events,omitempty"`
	// ProxyMode is the data path serving the portals (SPEC §8): whether
	// they keep serving while the agent is away. Empty from apply.
	ProxyMode ProxyMode `json:"proxyMode,omitempty"`
	// DNS is where the agent answers service names (SPEC §10); nil when
	// it serves none (--dns-address=none, or apply).
	DNS *DNSStatus `json:"dns,omitempty"`
	// Restarted are the containers the pass restarted, for the metrics.
	Restarted []reconcile.RestartedContainer `json:"-"`
}

// reportJSON is the report as JSON holds it: the duration in seconds.
// Time and Duration come first, where Report has them, and hide the
// embedded report's, being the shallower fields.
type reportJSON struct {
	Time     time.Time `json:"time"`
	Duration float64   `json:"duration"`
	plainReport
}

// plainReport is Report without its JSON methods.
type plainReport Report

// MarshalJSON writes the duration in seconds.
func (r Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(reportJSON{Time: r.Time, Duration: r.Duration.Seconds(), plainReport: plainReport(r)})
}

// UnmarshalJSON reads the duration in seconds.
func (r *Report) UnmarshalJSON(b []byte) error {
	var v reportJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Report(v.plainReport)
	r.Time, r.Duration = v.Time, time.Duration(v.Duration*float64(time.Second))
	return nil
}

// Event is one thing the agent did or met: an action of a pass (a plan
// line, "+ pod web-1") or a problem of one. Object and Name say what it
// is about ("pod" and a replica, "service" and a service), empty for the
// node as a whole.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"` // "Normal" for actions, "Warning" for problems, as Kubernetes says
	Object  string    `json:"object,omitempty"`
	Name    string    `json:"name,omitempty"`
	Message string    `json:"message"`
	// Count is how many passes in a row met the same problem; LastTime is
	// the last of them.
	Count    int       `json:"count,omitempty"`
	LastTime time.Time `json:"lastTime,omitzero"`
}

// SourceStatus is the git revision a pass read (SPEC §12).
type SourceStatus struct {
	Revision gitsource.Revision `json:"revision"`
	// FetchError is the last fetch's error: Revision is the one kept.
	FetchError string `json:"fetchError,omitempty"`
}

// DNSStatus is the agent's DNS server: what a pod's resolv.conf names,
// and the domain its services answer under.
type DNSStatus struct {
	Address string `json:"address"` // ip:port
	Domain  string `json:"domain"`  // services are <name>.svc.<domain>
}

// PodStatus is one managed pod replica.
type PodStatus struct {
	Replica  string    `json:"replica"`
	Pod      string    `json:"pod"`
	Unit     string    `json:"unit"`
	State    string    `json:"state"` // podman's pod state: Running, Degraded, Exited, …
	Ready    bool      `json:"ready"`
	Restarts int       `json:"restarts"` // by cuelet (and by podman, in a pod of an older cuelet)
	Created  time.Time `json:"created"`
	IP       string    `json:"ip,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Reason, when set, is why the replica is not where it should be, in
	// kubectl's words (CrashLoopBackOff); status shows it for State.
	Reason string `json:"reason,omitempty"`
	// NextRestart is when a crashing replica is started again.
	NextRestart time.Time `json:"nextRestart,omitzero"`
	// Phase is the replica's phase (reconcile.ReplicaCondition) and
	// Condition why it does not serve, "" when it does.
	Phase     string `json:"phase,omitempty"`
	Condition string `json:"condition,omitempty"`
	// Containers are the containers of the replica's spec, in its order,
	// also those podman does not have (State "").
	Containers []ContainerStatus `json:"containers,omitempty"`
}

// ContainerStatus is one container of a replica.
type ContainerStatus struct {
	Name string `json:"name"`
	// State is podman's container state (running, exited, …), "" when
	// podman has no such container.
	State     string    `json:"state"`
	Phase     string    `json:"phase"` // reconcile.ContainerPhase
	ExitCode  int       `json:"exitCode,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	Restarts  int       `json:"restarts"`
	// Ready: running, and its readiness probe, if it has one, passes.
	Ready bool `json:"ready"`
	// Probe is its readiness probe in words ("http-get :8080/healthz
	// every 10s"), "" without one.
	Probe string `json:"probe,omitempty"`
}

// ReadyContainers counts the ready containers, for kubectl's READY n/m.
func (p PodStatus) ReadyContainers() int {
	n := 0
	for _, c := range p.Containers {
		if c.Ready {
			n++
		}
	}
	return n
}

// RolloutStatus is the rollout of one pod definition that waits or is
// stuck; the replicas not yet replaced keep the old spec.
type RolloutStatus struct {
	Pod    string `json:"pod"`
	Unit   string `json:"unit"`
	State  string `json:"state"`  // "waiting" or "stuck"
	Reason string `json:"reason"` // the replica it waits for, and why
}

// String is the line `cuelet status` prints: "rollout stuck: web-1: …".
func (r RolloutStatus) String() string {
	return "rollout " + r.State + ": pod " + r.Pod + ": " + r.Reason
}

// ServiceStatus is one service with its portal and current endpoints.
type ServiceStatus struct {
	Name     string       `json:"name"`
	Unit     string       `json:"unit"`
	PortalIP string       `json:"portalIP"`
	Ports    []PortStatus `json:"ports"` // each with its ready endpoints
	Error    string       `json:"error,omitempty"`
}

// PortStatus is one port of a service.
type PortStatus struct {
	Name         string   `json:"name,omitempty"`
	Protocol     string   `json:"protocol"`
	Port         int      `json:"port"`
	ExternalPort int      `json:"externalPort,omitempty"`
	Endpoints    []string `json:"endpoints"`
}

// UnitStatus says whether a unit validated; an invalid one keeps its last
// known good state, which LastGood tells.
type UnitStatus struct {
	ID       string              `json:"id"`
	Valid    bool                `json:"valid"`
	Problems []manifests.Problem `json:"problems,omitempty"` // as `cuelet validate --json` gives them
	LastGood bool                `json:"lastGood,omitempty"` // an invalid unit whose last good version is applied
}

// Summary is the one-line STATUS= text: "12 pods, 4 services, 1 invalid unit".
func (r *Report) Summary() string {
	invalid := 0
	for _, u := range r.Units {
		if !u.Valid {
			invalid++
		}
	}
	s := fmt.Sprintf("%s, %s, %s", plural(len(r.Pods), "pod"), plural(len(r.Services), "service"), plural(invalid, "invalid unit"))
	if r.Source != nil {
		s += "; revision " + r.Source.Revision.String()
		if r.Source.FetchError != "" {
			s += " (fetch failing)"
		}
	}
	if r.PodmanDown {
		s += "; podman unreachable"
	} else if len(r.Errors) > 0 {
		s += "; " + plural(len(r.Errors), "error")
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ErrorList is a list of errors that JSON holds as their messages. A
// decoded one (`cuelet status` reading the agent's report) has errors that
// carry only the message.
type ErrorList []error

// MarshalJSON writes the messages.
func (l ErrorList) MarshalJSON() ([]byte, error) {
	return json.Marshal(l.Strings())
}

// UnmarshalJSON reads messages.
func (l *ErrorList) UnmarshalJSON(b []byte) error {
	var msgs []string
	if err := json.Unmarshal(b, &msgs); err != nil {
		return err
	}
	*l = nil
	for _, m := range msgs {
		*l = append(*l, errors.New(m))
	}
	return nil
}

// Strings are the messages.
func (l ErrorList) Strings() []string {
	out := make([]string, len(l))
	for i, err := range l {
		out[i] = err.Error()
	}
	return out
}
