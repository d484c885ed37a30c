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
	// Lines are the actions, one a line: pods first, then services.
	Lines []string
	// Invalid are the units that failed validation; plan exits 1 with them.
	Invalid []UnitStatus
}

// Plan says what Sync would do, changing nothing.
func (n *Node) Plan(ctx context.Context) (*PlanResult, error) {
	d, err := n.load(ctx)
	if err != nil {
		return nil, err // the loader names the folder
	}
	res := &PlanResult{}
	for _, u := range unitStatuses(d.units) {
		if !u.Valid {
			res.Invalid = append(res.Invalid, u)
		}
	}
	alloc := portal.Plan(n.cfg.Options.PortalCIDR, n.portals.Addrs(), d.wantPortals(), n.cfg.Options.DNSAddress)
	actions, err := n.rec.Plan(ctx, reconcileDesired(d, alloc))
	if err != nil {
		return nil, err
	}
	for _, a := range actions {
		res.Lines = append(res.Lines, a.String())
	}
	before, err := n.applied.load()
	if err != nil {
		return nil, err
	}
	res.Lines = append(res.Lines, servicePlan(before, d.services, alloc)...)
	return res, nil
}

// servicePlan compares the services as last applied with the desired ones.
func servicePlan(before map[string]appliedService, want []ownedService, alloc portal.Allocation) []string {
	var lines []string
	seen := map[string]bool{}
	for _, s := range want {
		name := s.svc.Name
		seen[name] = true
		ip, ok := alloc.Addrs[name]
		if !ok {
			lines = append(lines, fmt.Sprintf("! service %s (no portal: %v)", name, alloc.Errors[name]))
			continue
		}
		old, existed := before[name]
		if !existed {
			lines = append(lines, fmt.Sprintf("+ service %s %s", name, portalText(ip, s.svc.Ports)))
			continue
		}
		if why := serviceChanges(old, ip, s.svc); len(why) > 0 {
			lines = append(lines, fmt.Sprintf("~ service %s (%s)", name, strings.Join(why, ", ")))
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
		lines = append(lines, "- service "+name)
	}
	return lines
}

// serviceChanges says what differs between the applied and the desired
// version of a service.
func serviceChanges(old appliedService, ip netip.Addr, svc *manifests.Service) []string {
	var why []string
	if old.Portal != ip.String() {
		why = append(why, fmt.Sprintf("portal %s → %s", old.Portal, ip))
	}
	o := old.Service
	if !reflect.DeepEqual(o.Ports, svc.Ports) {
		why = append(why, "ports changed")
	}
	if !maps.Equal(o.Selector, svc.Selector) {
		why = append(why, "selector changed")
	}
	if !slices.Equal(o.Endpoints, svc.Endpoints) {
		why = append(why, "endpoints changed")
	}
	if o.SessionAffinity != svc.SessionAffinity || o.SessionAffinityTimeoutSeconds != svc.SessionAffinityTimeoutSeconds {
		why = append(why, "sessionAffinity changed")
	}
	return why
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
