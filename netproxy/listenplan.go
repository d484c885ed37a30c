package netproxy

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// listenerPlan is the pure half of Proxy.Update: which service ports a set
// of services needs, which listening addresses each of them owns, which of
// the current listeners stay, which open and which close, and what cannot
// be served (invalid services, addresses two service ports want). It does
// no I/O, so that it can be table-tested and so that a data path other than
// the userspace proxy (the kernel's, SPEC §8) can take the same decisions.
type listenerPlan struct {
	// ports are the service ports to serve, sorted by service, port and
	// protocol (comparePortKeys).
	ports []plannedPort
	// close are current listeners that no service port wants any more, or
	// whose address another service port owns now; sorted. They close
	// before any opens, so that an address can move between service ports.
	close []listenerKey
	// conflicts are the listeners a service port wants but cannot have,
	// because a service earlier in name order owns the address.
	conflicts []listenerConflict
	// errs says, per service name, why the plan does not serve it fully:
	// an invalid Service, a port listed twice, a conflict. Nil when none.
	errs map[string]error
}

// plannedPort is one service port of a plan with the listeners it owns.
type plannedPort struct {
	key  portKey
	svc  Service
	port Port
	// listeners are its portal listener and then, with an external port,
	// its external one; a conflicting address is left out.
	listeners []plannedListener
}

// plannedListener is one listening address a service port owns.
type plannedListener struct {
	key listenerKey
	// open: there is no current listener for this service port at the
	// address, so one is opened; otherwise the current one is kept,
	// without a gap.
	open bool
}

// listenerConflict is a listening address wanted by two service ports.
type listenerConflict struct {
	key          listenerKey
	owner, loser portKey
}

// planListeners decides the listeners of services (the whole desired set)
// given the current listeners and their owners. The first service in name
// order wins a contested listening address. An external port listens on
// external; when external is the wildcard address and the external port
// number is also a portal port of some service (of the same protocol),
// the listener is marked shared (SO_REUSEPORT, see setListenOptions).
func planListeners(services []Service, external netip.Addr, current map[listenerKey]portKey) listenerPlan {
	var pl listenerPlan
	fail := func(service string, err error) {
		if pl.errs == nil {
			pl.errs = map[string]error{}
		}
		pl.errs[service] = errors.Join(pl.errs[service], err)
	}

	sorted := slices.SortedFunc(slices.Values(services), func(a, b Service) int { return cmp.Compare(a.Name, b.Name) })
	type protoPort struct {
		protocol string
		port     int
	}
	// Every service's portal ports, invalid services' included: a shared
	// listener must not depend on whether a neighbour validates.
	portalPorts := map[protoPort]bool{}
	for _, s := range sorted {
		for _, port := range s.Ports {
			portalPorts[protoPort{port.protocol(), port.Port}] = true
		}
	}

	desired := map[portKey]*plannedPort{}
	owners := map[listenerKey]portKey{}
	for _, s := range sorted {
		if err := s.validate(); err != nil {
			fail(s.Name, fmt.Errorf("service %s: %w", s.Name, err))
			continue
		}
		for _, port := range s.Ports {
			pk := portKey{s.Name, port.label(), port.protocol()}
			if _, dup := desired[pk]; dup {
				fail(s.Name, fmt.Errorf("service %s: %w: listed twice", s.Name, ErrInvalidService))
				continue
			}
			d := &plannedPort{key: pk, svc: s, port: port}
			keys := []listenerKey{{protocol: port.protocol(), addr: netip.AddrPortFrom(s.PortalIP, uint16(port.Port))}}
			if port.ExternalPort != 0 {
				keys = append(keys, listenerKey{
					protocol: port.protocol(),
					addr:     netip.AddrPortFrom(external, uint16(port.ExternalPort)),
					shared:   external.IsUnspecified() && portalPorts[protoPort{port.protocol(), port.ExternalPort}],
				})
			}
			for _, lk := range keys {
				if owner, taken := owners[lk]; taken {
					pl.conflicts = append(pl.conflicts, listenerConflict{key: lk, owner: owner, loser: pk})
					fail(s.Name, fmt.Errorf("listen %s for service %s port %s: %w (service %s port %s)",
						lk, s.Name, port.label(), ErrListenerConflict, owner.service, owner.port))
					continue
				}
				owners[lk] = pk
				owner, ok := current[lk]
				d.listeners = append(d.listeners, plannedListener{key: lk, open: !ok || owner != pk})
			}
			desired[pk] = d
		}
	}

	for lk, owner := range current {
		if want, ok := owners[lk]; !ok || want != owner {
			pl.close = append(pl.close, lk)
		}
	}
	slices.SortFunc(pl.close, compareListenerKeys)
	for _, pk := range slices.SortedFunc(maps.Keys(desired), comparePortKeys) {
		pl.ports = append(pl.ports, *desired[pk])
	}
	return pl
}

// wants reports whether the plan serves the service port.
func (pl listenerPlan) wants(pk portKey) bool {
	_, ok := slices.BinarySearchFunc(pl.ports, pk, func(p plannedPort, pk portKey) int { return comparePortKeys(p.key, pk) })
	return ok
}

func compareListenerKeys(a, b listenerKey) int {
	return cmp.Or(cmp.Compare(a.protocol, b.protocol), a.addr.Compare(b.addr), compareBool(a.shared, b.shared))
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// String renders the plan one decision a line, for tests and debugging:
//
//	close TCP 10.96.0.1:80
//	keep TCP 10.96.0.2:80 web/http
//	open TCP 0.0.0.0:30080 shared web/http
//	conflict TCP 10.96.0.2:80 api/http (owned by web/http)
func (pl listenerPlan) String() string {
	var b strings.Builder
	for _, lk := range pl.close {
		fmt.Fprintf(&b, "close %s\n", lk)
	}
	for _, p := range pl.ports {
		if len(p.listeners) == 0 {
			fmt.Fprintf(&b, "serve %s/%s %s (no listener)\n", p.key.service, p.key.port, p.key.protocol)
		}
		for _, l := range p.listeners {
			verb := "keep"
			if l.open {
				verb = "open"
			}
			shared := ""
			if l.key.shared {
				shared = " shared"
			}
			fmt.Fprintf(&b, "%s %s%s %s/%s\n", verb, l.key, shared, p.key.service, p.key.port)
		}
	}
	for _, c := range pl.conflicts {
		fmt.Fprintf(&b, "conflict %s %s/%s (owned by %s/%s)\n", c.key, c.loser.service, c.loser.port, c.owner.service, c.owner.port)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// PlannedPort is one service port a data path serves, as PlanPorts
// decides it.
type PlannedPort struct {
	Service Service
	Port    Port
	// Label is the port's name, or its number when it has none: the
	// metrics' port label. Protocol is "TCP" or "UDP".
	Label, Protocol string
	// Addrs are the addresses the port owns: its portal and, with an
	// external port, external:ExternalPort; an address an earlier service
	// owns is left out (and reported).
	Addrs []netip.AddrPort
}

// PlanPorts is the userspace proxy's decision of which service ports to
// serve and at which addresses, for another data path (the kernel's,
// netproxy/kernel): the same validation, the same winner when two service
// ports want one address, the same errors per service name. The ports are
// sorted by service, port label and protocol.
func PlanPorts(services []Service, external netip.Addr) ([]PlannedPort, map[string]error) {
	pl := planListeners(services, external, nil)
	out := make([]PlannedPort, 0, len(pl.ports))
	for _, p := range pl.ports {
		pp := PlannedPort{Service: p.svc, Port: p.port, Label: p.key.port, Protocol: p.key.protocol}
		for _, l := range p.listeners {
			pp.Addrs = append(pp.Addrs, l.key.addr)
		}
		out = append(out, pp)
	}
	return out, pl.errs
}
