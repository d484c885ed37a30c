package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/netproxy/portal"
	"github.com/cuelet/cuelet/reconcile"
)

// appliedServicesFile records, under the state dir, the services as the
// last pass applied them, so that `cuelet plan` can say what would change.
const appliedServicesFile = "services.json"

type appliedService struct {
	Unit    string            `json:"unit"`
	Portal  string            `json:"portal"`
	Service manifests.Service `json:"service"`
}

type appliedServices struct {
	path string
	last []byte
}

func (a *appliedServices) save(services []ownedService, portals map[string]netip.Addr) error {
	rec := map[string]appliedService{}
	for _, s := range services {
		svc := *s.svc
		rec[svc.Name] = appliedService{Unit: s.unit, Portal: portals[svc.Name].String(), Service: svc}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("record applied services: %w", err)
	}
	if string(b) == string(a.last) {
		return nil
	}
	if old, err := os.ReadFile(a.path); err == nil && string(old) == string(b) {
		a.last = b
		return nil
	}
	if err := renameio.WriteFile(a.path, b, 0o600); err != nil {
		return fmt.Errorf("record applied services: %w", err)
	}
	a.last = b
	return nil
}

func (a *appliedServices) load() (map[string]appliedService, error) {
	// What save wrote or found last is what the file holds: only this
	// process writes it while it runs (the state lock).
	b := a.last
	if b == nil {
		var err error
		b, err = os.ReadFile(a.path)
		if errors.Is(err, os.ErrNotExist) {
			return map[string]appliedService{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read applied services: %w", err)
		}
	}
	rec := map[string]appliedService{}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("read applied services %s: %w", a.path, err)
	}
	return rec, nil
}

// PlanResult is what `cuelet plan` prints.
type PlanResult struct {
	// Actions are pods first, in the planner's order, then services.
	Actions []PlanAction `json:"actions"`
	// Invalid are the units that failed validation; plan exits 1 with them.
	Invalid []UnitStatus `json:"-"`
	// Problems are the problems of the invalid units, as validate gives them.
	Problems []manifests.Problem `json:"problems"`
}

// PlanAction is one line of the plan, and what `cuelet plan --json` gives
// for it.
type PlanAction struct {
	// Line is the plan's text line: "~ pod web (image changed)".
	Line string `json:"-"`
	// Action is create (+), recreate or start or update (~), remove (-),
	// conflict or error (!).
	Action string `json:"action"`
	Object string `json:"object"` // pod or service
	Name   string `json:"name"`
	Unit   string `json:"unit,omitempty"`
	// Portal is a new service's portal, "10.96.0.20:80,53/udp".
	Portal  string   `json:"portal,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
	// Changes say, field by field, what a ~ action changes, old → new.
	Changes []reconcile.Change `json:"changes,omitempty"`
}

// Plan says what Sync would do, changing nothing.
func (n *Node) Plan(ctx context.Context) (*PlanResult, error) {
	d, err := n.load(ctx)
	if err != nil {
		return nil, err // the loader names the folder
	}
	res := &PlanResult{Actions: []PlanAction{}, Problems: []manifests.Problem{}}
	for _, u := range unitStatuses(d.units) {
		if !u.Valid {
			res.Invalid = append(res.Invalid, u)
		}
	}
	for _, e := range d.units {
		res.Problems = append(res.Problems, e.found.Problems...)
	}
	alloc := portal.Plan(n.cfg.Options.PortalCIDR, n.portals.Addrs(), d.wantPortals(), n.cfg.Options.DNSAddress)
	actions, err := n.rec.Plan(ctx, n.reconcileDesired(d, alloc))
	if err != nil {
		return nil, err
	}
	for _, a := range actions {
		res.Actions = append(res.Actions, podAction(a))
	}
	before, err := n.applied.load()
	if err != nil {
		return nil, err
	}
	res.Actions = append(res.Actions, servicePlan(before, d.services, alloc)...)
	return n.planInRepository(res), nil
}

var actionNames = map[reconcile.Kind]string{
	reconcile.Create: "create", reconcile.Recreate: "recreate", reconcile.Start: "start",
	reconcile.Remove: "remove", reconcile.Conflict: "conflict",
}

func podAction(a reconcile.Action) PlanAction {
	obj := a.Object
	if obj == "" {
		obj = "pod"
	}
	return PlanAction{Line: a.String(), Action: actionNames[a.Kind], Object: obj, Name: a.Name, Unit: a.Unit, Reasons: a.Reasons, Changes: a.Changes}
}

// servicePlan compares the services as last applied with the desired ones.
func servicePlan(before map[string]appliedService, want []ownedService, alloc portal.Allocation) []PlanAction {
	var out []PlanAction
	seen := map[string]bool{}
	for _, s := range want {
		name := s.svc.Name
		seen[name] = true
		a := PlanAction{Object: "service", Name: name, Unit: s.unit}
		ip, ok := alloc.Addrs[name]
		if !ok {
			a.Action, a.Reasons = "error", []string{fmt.Sprintf("no portal: %v", alloc.Errors[name])}
			a.Line = fmt.Sprintf("! service %s (%s)", name, a.Reasons[0])
			out = append(out, a)
			continue
		}
		old, existed := before[name]
		if !existed {
			a.Action, a.Portal = "create", portalText(ip, s.svc.Ports)
			a.Line = fmt.Sprintf("+ service %s %s", name, a.Portal)
			out = append(out, a)
			continue
		}
		if why, changes := serviceChanges(old, ip, s.svc); len(why) > 0 {
			a.Action, a.Reasons, a.Changes = "update", why, changes
			a.Line = fmt.Sprintf("~ service %s (%s)", name, strings.Join(why, ", "))
			out = append(out, a)
		}
	}
	var gone []string
	for name := range before {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		out = append(out, PlanAction{Line: "- service " + name, Action: "remove", Object: "service", Name: name, Unit: before[name].Unit})
	}
	return out
}

// serviceChanges says what differs between the applied and the desired
// version of a service: in plan words, and field by field, old → new.
func serviceChanges(old appliedService, ip netip.Addr, svc *manifests.Service) (why []string, changes []reconcile.Change) {
	if old.Portal != ip.String() {
		why = append(why, fmt.Sprintf("portal %s → %s", old.Portal, ip))
		changes = reconcile.AppendChange(changes, "portal", old.Portal, ip.String())
	}
	o := old.Service
	if !reflect.DeepEqual(o.Ports, svc.Ports) {
		why = append(why, "ports changed")
		changes = reconcile.AppendChange(changes, "ports", o.Ports, svc.Ports)
	}
	if !maps.Equal(o.Selector, svc.Selector) {
		why = append(why, "selector changed")
		changes = reconcile.AppendMapChanges(changes, "selector", o.Selector, svc.Selector)
	}
	if !slices.Equal(o.Endpoints, svc.Endpoints) {
		why = append(why, "endpoints changed")
		changes = reconcile.AppendChange(changes, "endpoints", o.Endpoints, svc.Endpoints)
	}
	if o.SessionAffinity != svc.SessionAffinity || o.SessionAffinityTimeoutSeconds != svc.SessionAffinityTimeoutSeconds {
		why = append(why, "sessionAffinity changed")
		changes = reconcile.AppendChange(changes, "sessionAffinity", o.SessionAffinity, svc.SessionAffinity)
		changes = reconcile.AppendChange(changes, "sessionAffinityTimeoutSeconds", o.SessionAffinityTimeoutSeconds, svc.SessionAffinityTimeoutSeconds)
	}
	return why, changes
}

// portalText is "10.96.0.20:80", "10.96.0.20:80,443", "10.96.0.53:53/udp",
// with " (external 30080)" for external ports.
func portalText(ip netip.Addr, ports []manifests.ServicePort) string {
	var ps, ext []string
	for _, p := range ports {
		s := strconv.Itoa(p.Port)
		if p.Protocol == "UDP" {
			s += "/udp"
		}
		ps = append(ps, s)
		if p.ExternalPort != 0 {
			ext = append(ext, strconv.Itoa(p.ExternalPort))
		}
	}
	out := ip.String() + ":" + strings.Join(ps, ",")
	if len(ext) > 0 {
		out += " (external " + strings.Join(ext, ",") + ")"
	}
	return out
}
