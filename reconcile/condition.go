package reconcile

import (
	"cmp"
	"encoding/json"
	"strconv"
	"strings"
)

// Phase is where a replica stands, in Kubernetes' words.
type Phase string

// The phases of a replica. The decision behind them, which every part of
// cuelet shares (plan's repairs, a rollout's next step, endpoints, probes):
//
//   - A container that exited with code 0 under OnFailure or Never has
//     finished, as a Kubernetes container that completed: it is not a crash,
//     it is not started again, and a replica all of whose containers
//     finished so is Succeeded. Succeeded counts as up: a rollout does not
//     wait forever for a job that is done (SPEC §3.6), and nothing repairs
//     it (§3.7 restarts "according to restartPolicy").
//   - A container that exited while its policy wants it running (Always, or
//     OnFailure with a non-zero code) is Stopped: cuelet starts it again once
//     its crash-loop backoff allows (Restarts), as the kubelet does. Under
//     Never it is Failed and stays so.
//   - Only a replica whose infra container and every container run serves:
//     a finished, paused or stopping container takes no traffic, so its
//     replica gets no endpoints (SPEC §3.10: "a replica that is not running
//     ... gets no new connections"), as a Kubernetes pod with a terminated
//     container is not Ready.
//   - Paused and stopping containers (a person paused it, podman is
//     stopping or restarting it) count as up and are left alone, so that
//     cuelet does not race podman's own restart policy.
//   - Created but never started is Pending: not up, and started by repair
//     whatever the restart policy, since every container runs at least once.
//   - The infra container must be up for the replica to be: without it the
//     pod has no network, and a stopped pod is started again by repair.
const (
	// PhasePending: a container or the infra container has not started
	// yet, or is missing.
	PhasePending Phase = "Pending"
	// PhaseRunning: the infra container is up, and every container is up
	// or has finished as its restart policy lets it; at least one is up.
	PhaseRunning Phase = "Running"
	// PhaseSucceeded: the infra container is up and every container has
	// finished with exit code 0 under OnFailure or Never.
	PhaseSucceeded Phase = "Succeeded"
	// PhaseFailed: a container, or the infra container, is down although
	// the restart policy wants it up.
	PhaseFailed Phase = "Failed"
)

// ContainerPhase is how one container of a replica stands.
type ContainerPhase string

// The phases of a container.
const (
	ContainerRunning ContainerPhase = "Running" // state running: may serve
	// ContainerHeld: paused, or stopping (podman may be restarting it).
	// Up, but not serving; cuelet leaves it alone.
	ContainerHeld    ContainerPhase = "Held"
	ContainerWaiting ContainerPhase = "Waiting" // created, never started
	// ContainerSucceeded: exited 0 under OnFailure or Never; done.
	ContainerSucceeded ContainerPhase = "Succeeded"
	// ContainerStopped: exited under Always, or non-zero under OnFailure;
	// cuelet starts it again, with backoff (Restarts).
	ContainerStopped ContainerPhase = "Stopped"
	// ContainerFailed: exited non-zero under Never; it stays so.
	ContainerFailed  ContainerPhase = "Failed"
	ContainerMissing ContainerPhase = "Missing"
)

// ContainerCondition is one container of a replica's spec, as observed.
type ContainerCondition struct {
	Name     string // manifest name
	ID       string // podman's, "" when missing
	Phase    ContainerPhase
	State    string // podman's state, "" when missing
	ExitCode int
}

// Condition is the one answer to "is this replica up?".
type Condition struct {
	Phase Phase
	// Serving: the infra container and every container are running, so
	// the replica may take traffic once its readiness probes pass.
	Serving bool
	// Reason says why the replica is not up, or, when it is, why it does
	// not serve; "" when it serves.
	Reason string
	// InfraUp: the infra container runs (or is paused or stopping).
	InfraUp bool
	// Containers are the containers of the replica's spec, in its order.
	Containers []ContainerCondition
}

// Up reports whether the replica is where its restart policy wants it:
// running, or finished well. A rollout moves on from an up replica.
func (c Condition) Up() bool { return c.Phase == PhaseRunning || c.Phase == PhaseSucceeded }

// Running reports whether the named container runs (and may be probed).
func (c Condition) Running(name string) bool {
	for _, cc := range c.Containers {
		if cc.Name == name {
			return cc.Phase == ContainerRunning
		}
	}
	return false
}

// ReplicaCondition judges an observed replica against the spec it was
// created with (its io.cuelet.spec label), not against the manifests of
// now: a replica of an older spec keeps its own restart policy and
// containers until it is replaced. Without a readable spec label it judges
// the containers podman has, under restartPolicy Always.
func ReplicaCondition(p ObservedPod) Condition {
	policy, names := "Always", []string(nil)
	var s spec
	if json.Unmarshal([]byte(p.Labels[LabelSpec]), &s) == nil && len(s.Containers) > 0 {
		if s.RestartPolicy != "" {
			policy = s.RestartPolicy
		}
		for _, c := range s.Containers {
			names = append(names, c.Name)
		}
	} else {
		for _, c := range p.Containers {
			name := c.Labels[LabelContainer]
			if name == "" {
				name = strings.TrimPrefix(c.Name, p.Name+"-")
			}
			names = append(names, name)
		}
	}

	var c Condition
	for _, name := range names {
		cc := ContainerCondition{Name: name, Phase: ContainerMissing}
		if oc, ok := observedContainer(p, name); ok {
			cc.ID, cc.State, cc.ExitCode = oc.ID, oc.State, oc.ExitCode
			cc.Phase = containerPhase(oc, policy)
		}
		c.Containers = append(c.Containers, cc)
	}

	infra := strings.ToLower(p.InfraState)
	c.InfraUp = infraUp(infra)
	c.Serving = infra == "running" && len(c.Containers) > 0
	var pending, failed, finished, up int
	var blocking, idle string // the first container keeping the replica down, or from serving
	for _, cc := range c.Containers {
		if cc.Phase != ContainerRunning {
			c.Serving = false
		}
		why := "container " + cc.Name + " " + cc.State
		if cc.State == "exited" || cc.State == "stopped" {
			why += " (exit code " + strconv.Itoa(cc.ExitCode) + ")"
		}
		switch cc.Phase {
		case ContainerMissing:
			pending++
			why = "container " + cc.Name + " missing"
		case ContainerWaiting:
			pending++
		case ContainerStopped, ContainerFailed:
			failed++
		case ContainerSucceeded:
			finished++
			why, idle = "", cmp.Or(idle, why)
		case ContainerHeld:
			up++
			why, idle = "", cmp.Or(idle, why)
		default:
			up++
			why = ""
		}
		blocking = cmp.Or(blocking, why)
	}
	c.Reason = cmp.Or(blocking, idle)
	switch {
	case p.InfraID == "" && infra == "":
		c.Phase, c.Reason = PhasePending, "infra container missing"
	case infraWaiting(infra):
		c.Phase, c.Reason = PhasePending, "infra container "+p.InfraState
	case !c.InfraUp:
		c.Phase, c.Reason = PhaseFailed, "infra container "+p.InfraState
	case len(c.Containers) == 0:
		c.Phase, c.Reason = PhasePending, "no containers"
	case failed > 0:
		c.Phase = PhaseFailed
	case pending > 0:
		c.Phase = PhasePending
	case up == 0 && finished > 0:
		c.Phase = PhaseSucceeded
	default:
		c.Phase = PhaseRunning
	}
	if c.Serving {
		c.Reason = ""
	} else if c.Reason == "" {
		c.Reason = "infra container " + p.InfraState
	}
	return c
}

// containerPhase classifies one container under the replica's policy.
func containerPhase(oc ObservedContainer, policy string) ContainerPhase {
	switch strings.ToLower(oc.State) {
	case "running":
		return ContainerRunning
	case "paused", "stopping":
		return ContainerHeld
	case "created", "configured", "initialized":
		return ContainerWaiting
	case "exited", "stopped":
		switch {
		case policy == "Always":
			return ContainerStopped
		case oc.ExitCode == 0:
			return ContainerSucceeded
		case policy == "OnFailure":
			return ContainerStopped
		}
		return ContainerFailed
	}
	// Removing, unknown: not up; under Always, repair tries a start.
	if policy == "Always" {
		return ContainerStopped
	}
	return ContainerFailed
}

func infraUp(state string) bool {
	switch state {
	case "running", "paused", "stopping":
		return true
	}
	return false
}

func infraWaiting(state string) bool {
	switch state {
	case "created", "configured", "initialized":
		return true
	}
	return false
}

// observedContainer finds a container by its manifest name: by label, or,
// for a container without cuelet's labels, by podman name.
func observedContainer(p ObservedPod, name string) (ObservedContainer, bool) {
	if oc, ok := p.Container(name); ok {
		return oc, true
	}
	for _, oc := range p.Containers {
		if oc.Labels[LabelContainer] == "" && oc.Name == containerName(p.Name, name) {
			return oc, true
		}
	}
	return ObservedContainer{}, false
}
