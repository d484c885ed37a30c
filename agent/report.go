package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cuelet/cuelet/manifests/gitsource"
	"github.com/cuelet/cuelet/reconcile"
)

// Report is what one sync pass saw and did. The agent keeps the latest one
// for `cuelet status`, the metrics and systemd's STATUS= line.
type Report struct {
	Time     time.Time       `json:"time"`
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
	// Restarted are the containers the pass restarted, for the metrics.
	Restarted []reconcile.RestartedContainer `json:"-"`
}

// SourceStatus is the git revision a pass read (SPEC §12).
type SourceStatus struct {
	Revision gitsource.Revision `json:"revision"`
	// FetchError is the last fetch's error: Revision is the one kept.
	FetchError string `json:"fetchError,omitempty"`
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

	// Reason is "CrashLoopBackOff" while a container that exited waits
	// out its backoff before cuelet starts it again (SPEC §9).
	Reason string `json:"reason,omitempty"`
	// NextRestart is when the first such container is started again.
	NextRestart time.Time `json:"nextRestart,omitzero"`
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
	Name      string       `json:"name"`
	Unit      string       `json:"unit"`
	PortalIP  string       `json:"portalIP"`
	Ports     []PortStatus `json:"ports"`
	Endpoints []string     `json:"endpoints"` // ready endpoints of the first port, HOST:PORT
	Error     string       `json:"error,omitempty"`
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
	ID       string   `json:"id"`
	Valid    bool     `json:"valid"`
	Problems []string `json:"problems,omitempty"` // FILE:LINE:COL: PATH: MESSAGE
	LastGood bool     `json:"lastGood,omitempty"` // an invalid unit whose last good version is applied
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
