package reconcile

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cuelet/cuelet/manifests"
)

// Kind says what an action does.
type Kind int

const (
	// Create makes a replica that does not exist.
	Create Kind = iota + 1
	// Recreate replaces a replica whose spec changed, or that lost a container.
	Recreate
	// Start starts containers of a replica that were stopped by hand.
	Start
	// Remove deletes a replica that is no longer wanted.
	Remove
	// Conflict reports a pod of a wanted name that cuelet does not own.
	Conflict
)

var kindSigns = map[Kind]string{Create: "+", Recreate: "~", Start: "~", Remove: "-", Conflict: "!"}

// Action is one step of a plan.
type Action struct {
	Kind Kind
	// Object is what the action is about: "pod" here; services come later.
	Object string
	// Name is the object's name: for pods the replica (= podman pod) name.
	Name string
	// Unit is the ID of the unit the pod belongs to (the desired one, or the
	// label of an observed pod being removed).
	Unit string
	// Group is the pod definition; Recreate actions of one group run one at
	// a time, in order.
	Group string
	// Reasons say why a pod is recreated or started.
	Reasons []string
	// Changes are the fields behind the reasons, old → new: for a
	// Recreate, what differs from the running pod's spec; for a Start or a
	// repair, the state of what is not running.
	Changes []Change
	// Replica is the desired replica, for Create and Recreate.
	Replica *manifests.Replica
	// Containers are the podman names of the containers to start (Start);
	// none means the whole pod.
	Containers []string
	// Down marks a Recreate of a replica that is not up: replacing it
	// costs no availability, so a rollout takes it first.
	Down bool
	// Rollout marks a Create or a Recreate of a replica that is down, in
	// a pod definition whose other replicas wait to be replaced: a step of
	// the rollout, which the replicas still on the old spec wait for.
	Rollout bool
	// Grace is the time between SIGTERM and SIGKILL for the replica that
	// goes (Recreate, Remove); negative: podman's default.
	Grace time.Duration
}

// String formats the action as a plan line (SPEC §4): "+ pod web-1",
// "~ pod web (image changed)", "- pod old",
// "! pod web (conflict: not managed by cuelet)".
func (a Action) String() string {
	obj := a.Object
	if obj == "" {
		obj = "pod"
	}
	s := kindSigns[a.Kind] + " " + obj + " " + a.Name
	switch {
	case a.Kind == Conflict && len(a.Reasons) > 0:
		s += " (conflict: " + strings.Join(a.Reasons, ", ") + ")"
	case a.Kind == Conflict:
		s += " (conflict: " + ErrConflict.Error() + ")"
	case len(a.Reasons) > 0:
		s += " (" + strings.Join(a.Reasons, ", ") + ")"
	}
	return s
}

// Input is everything the planner looks at.
type Input struct {
	// Want are the replicas of the valid units.
	Want []manifests.Replica
	// Have are all pods on podman, managed or not, of this node or not.
	Have []ObservedPod
	// Node is this node's name: managed pods of other nodes (LabelNode)
	// are not planned over, and hold their names (SPEC §11).
	Node string
	// InvalidUnits are the IDs of units that failed validation; pods
	// labelled with them are left as they are (last known good).
	InvalidUnits []string
	// NoUnits is true when the manifest directory holds no unit at all.
	NoUnits bool
	// AllowEmpty permits removing every managed pod when NoUnits is true.
	AllowEmpty bool
	// HeldBack are the IDs of exited containers whose crash-loop backoff
	// has not run out (Restarts): they are not started in this pass.
	HeldBack map[string]bool
	// StartFailed are the replicas whose last start failed although podman
	// answered (a container left half-made by a podman killed while
	// starting it, say): they are made anew instead of started again, as
	// the kubelet replaces a container it cannot start.
	StartFailed map[string]bool
	// OtherNodes are the pod definitions of valid units whose nodeSelector
	// does not match this node; their replicas are not in Want, and a
	// removal says why.
	OtherNodes map[string]bool
}

// reasonOtherNode explains the removal of a pod that targets other nodes.
const reasonOtherNode = "nodeSelector does not match this node"

// inNameOrder is a copy of want sorted by pod name and replica index: the
// order in which a replica name defined twice goes to the first (Plan
// reports the other as a conflict, Apply creates only the first).
func inNameOrder(want []manifests.Replica) []manifests.Replica {
	out := append([]manifests.Replica(nil), want...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Pod.Name != out[j].Pod.Name {
			return out[i].Pod.Name < out[j].Pod.Name
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// Plan computes the actions that make Have equal to Want. It does no I/O.
// It fails only on the empty-directory guard (ErrNoUnits).
//
// The order is: per pod definition (by name) starts and conflicts by
// replica index, then creates by index, then recreates of replicas that are
// down, then recreates of replicas that are up, then scale-down removals
// from the highest index; then removals of pods whose definition is gone.
//
// A pod definition with a replica that is up but on an old spec is in a
// rollout (SPEC §3.6, §9): its creates and the recreates of its down
// replicas are marked Rollout, since they are the rollout's current step
// (a replica whose replacement failed is missing, not new), and the up
// replicas wait for them (Apply). So a replica that cannot be created
// costs that replica only.
func Plan(in Input) ([]Action, error) {
	invalid := map[string]bool{}
	for _, u := range in.InvalidUnits {
		invalid[u] = true
	}
	have := map[string]*ObservedPod{}
	managed := 0
	for i := range in.Have {
		p := &in.Have[i]
		have[p.Name] = p
		if p.OwnedBy(in.Node) {
			managed++
		}
	}
	if in.NoUnits && !in.AllowEmpty && managed > 0 {
		return nil, ErrNoUnits
	}

	want := inNameOrder(in.Want)
	wanted := map[string]*manifests.Replica{}
	groups := map[string]*groupActions{}
	var order []string
	group := func(name string) *groupActions {
		g, ok := groups[name]
		if !ok {
			g = &groupActions{}
			groups[name] = g
			order = append(order, name)
		}
		return g
	}
	specs := map[*manifests.Pod]spec{}
	for i := range want {
		r := &want[i]
		g := group(r.Pod.Name)
		if first, ok := wanted[r.Name]; ok {
			// "web-1" is replica 1 of web and replica 0 of a pod web-1:
			// the first in name order keeps it.
			g.changes = append(g.changes, Action{
				Kind: Conflict, Object: "pod", Name: r.Name, Unit: r.Unit, Group: r.Pod.Name,
				Reasons: []string{fmt.Sprintf("replica %d of pod %s has the same name", first.Index, first.Pod.Name)},
			})
			continue
		}
		wanted[r.Name] = r
		s, ok := specs[r.Pod]
		if !ok {
			s = normalize(r.Pod)
			specs[r.Pod] = s
		}
		base := Action{Object: "pod", Name: r.Name, Unit: r.Unit, Group: r.Pod.Name, Replica: r, Grace: gracePeriod(r.Pod)}
		o := have[r.Name]
		switch {
		case o == nil:
			base.Kind = Create
			g.creates = append(g.creates, base)
		case !o.Managed():
			base.Kind = Conflict
			g.changes = append(g.changes, base)
		case !o.OwnedBy(in.Node):
			// Another agent shares the podman; its pod is its own.
			base.Kind = Conflict
			base.Reasons = []string{"managed by node " + o.Node()}
			g.changes = append(g.changes, base)
		case invalid[o.Unit()]:
			// Last known good: the pod belongs to a unit that is invalid now.
		case o.Labels[LabelSpecHash] != s.hash():
			base.Kind = Recreate
			base.Reasons, base.Changes = changes(o.Labels[LabelSpec], s)
			g.recreate(base, o)
		case o.Unit() != r.Unit || o.PodName() != r.Pod.Name || o.Index() != r.Index:
			base.Kind = Recreate
			base.Reasons = []string{fmt.Sprintf("moved from unit %s", o.Unit())}
			base.Changes = AppendChange(nil, "unit", o.Unit(), r.Unit)
			base.Changes = AppendChange(base.Changes, "pod", o.PodName(), r.Pod.Name)
			base.Changes = AppendChange(base.Changes, "index", o.Index(), r.Index)
			g.recreate(base, o)
		case o.Labels[LabelRestartedBy] != restartedByCuelet:
			// An older cuelet left restarts to podman, which would restart
			// the containers without backoff, and behind cuelet's back.
			base.Kind = Recreate
			base.Reasons = []string{"restarts move from podman to cuelet"}
			g.recreate(base, o)
		default:
			if a, ok := repair(base, o, in.HeldBack, in.StartFailed[o.Name]); ok && a.Kind == Recreate {
				g.recreate(a, o)
			} else if ok {
				g.changes = append(g.changes, a)
			}
		}
	}

	var orphans []Action
	for i := range in.Have {
		o := &in.Have[i]
		if !o.OwnedBy(in.Node) || wanted[o.Name] != nil || invalid[o.Unit()] {
			continue
		}
		a := Action{Kind: Remove, Object: "pod", Name: o.Name, Unit: o.Unit(), Group: o.PodName(), Grace: o.GracePeriod()}
		if in.OtherNodes[o.PodName()] {
			a.Reasons = []string{reasonOtherNode}
		}
		if g, ok := groups[o.PodName()]; ok {
			// Scale-down: the definition's grace period of now.
			a.Grace = wantedGrace(in.Want, o.PodName())
			g.removes = append(g.removes, removal{a, o.Index()})
		} else {
			orphans = append(orphans, a)
		}
	}
	sort.SliceStable(orphans, func(i, j int) bool { return orphans[i].Name < orphans[j].Name })

	var out []Action
	sort.Strings(order)
	for _, name := range order {
		g := groups[name]
		out = append(out, g.changes...)
		if len(g.up) > 0 {
			for i := range g.creates {
				g.creates[i].Rollout = true
			}
			for i := range g.down {
				g.down[i].Rollout = true
			}
		}
		out = append(out, g.creates...)
		out = append(out, g.down...)
		out = append(out, g.up...)
		sort.SliceStable(g.removes, func(i, j int) bool { return g.removes[i].index > g.removes[j].index })
		for _, r := range g.removes {
			out = append(out, r.Action)
		}
	}
	return append(out, orphans...), nil
}

type groupActions struct {
	changes, creates []Action
	// down and up are the recreates of replicas that are down and up.
	down, up []Action
	removes  []removal
}

func (g *groupActions) recreate(a Action, o *ObservedPod) {
	if !ReplicaCondition(*o).Up() {
		a.Down = true
		g.down = append(g.down, a)
		return
	}
	g.up = append(g.up, a)
}

// wantedGrace is the grace period of the pod definition named pod, -1 when
// none is wanted.
func wantedGrace(want []manifests.Replica, pod string) time.Duration {
	for _, r := range want {
		if r.Pod.Name == pod {
			return gracePeriod(r.Pod)
		}
	}
	return -1
}

type removal struct {
	Action
	index int
}

// repair finds what was changed by hand, or what exited, in a pod whose
// spec is current: a missing container needs a new replica; a stopped pod,
// a container that exited although its restart policy wants it running,
// or one that never started, only needs a start. ReplicaCondition says
// which is which; an exited container held back by its crash-loop backoff
// waits for a later pass. When the last start of the replica failed
// (startFailed), what would be a start is a recreate.
func repair(a Action, o *ObservedPod, held map[string]bool, startFailed bool) (Action, bool) {
	cond := ReplicaCondition(*o)
	var missing, stopped, why []string
	var states []Change // each container that is not running, → running
	for _, c := range cond.Containers {
		switch c.Phase {
		case ContainerMissing:
			missing = append(missing, c.Name)
			states = append(states, Change{Field: "containers." + c.Name + ".state", Old: "missing", New: "running"})
		case ContainerStopped:
			if held[c.ID] {
				continue
			}
			stopped = append(stopped, c.Name)
			why = append(why, "container "+c.Name+" stopped")
			states = append(states, Change{Field: "containers." + c.Name + ".state", Old: "stopped", New: "running"})
		case ContainerWaiting:
			stopped = append(stopped, c.Name)
			why = append(why, "container "+c.Name+" not started")
			states = append(states, Change{Field: "containers." + c.Name + ".state", Old: "not started", New: "running"})
		}
	}
	switch {
	case len(missing) > 0 || o.InfraID == "":
		a.Kind = Recreate
		if len(missing) == 0 {
			a.Reasons = []string{"infra container missing"}
			a.Changes = []Change{{Field: "infra.state", Old: "missing", New: "running"}}
		}
		for _, c := range missing {
			a.Reasons = append(a.Reasons, "container "+c+" missing")
		}
		for _, c := range states {
			if c.Old == "missing" {
				a.Changes = append(a.Changes, c)
			}
		}
		return a, true
	case startFailed && (!cond.InfraUp || len(stopped) > 0):
		a.Kind = Recreate
		a.Reasons = []string{"start failed"}
		a.Changes = []Change{{Field: "state", Old: "cannot start", New: "running"}}
		return a, true
	case !cond.InfraUp:
		a.Kind = Start
		a.Reasons = []string{"pod stopped"}
		a.Changes = []Change{{Field: "state", Old: "stopped", New: "running"}}
		return a, true
	case len(stopped) > 0:
		a.Kind = Start
		a.Reasons = why
		a.Changes = states
		for _, c := range stopped {
			a.Containers = append(a.Containers, containerName(o.Name, c))
		}
		return a, true
	}
	return a, false
}
