package manifests

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// CheckCrossUnit checks the rules that span units and adds their problems
// to the units concerned, which makes them invalid (their Pods and Services
// are emptied, as for any other problem). Only valid units take part: an
// invalid unit defines nothing.
//
// The agent runs it again with the last known good version substituted for
// units that became invalid; it changes the units it is given, so pass
// copies of units that must stay as they are (see Unit.Clone).
func CheckCrossUnit(units []*Unit) {
	found := CrossUnitProblems(units)
	for _, u := range units {
		ps := found[u]
		if len(ps) == 0 {
			continue
		}
		u.Problems = append(u.Problems, ps...)
		sortProblems(u.Problems)
		u.Pods, u.Services = nil, nil
	}
}

// CrossUnitProblems returns, without changing anything, the problems of the
// rules that span units, by unit:
//   - a pod or service name is defined by one unit only; when two define
//     it, both are wrong, at the name;
//   - an externalPort is used once on the node;
//   - a fixed portalIP is used by one service only;
//   - a named targetPort is declared by a container of every pod that the
//     service's selector picks (a selector that picks nothing is fine).
func CrossUnitProblems(units []*Unit) map[*Unit][]Problem {
	out := map[*Unit][]Problem{}
	valid := slices.DeleteFunc(slices.Clone(units), func(u *Unit) bool { return !u.Valid() })

	type def struct {
		u    *Unit
		path []string
	}
	report := func(defs map[string][]def, atValue bool, describe func(key string, other def) string) {
		for _, key := range slices.Sorted(maps.Keys(defs)) {
			ds := defs[key]
			if len(ds) < 2 {
				continue
			}
			for i, d := range ds {
				other := ds[(i+1)%len(ds)]
				out[d.u] = append(out[d.u], d.u.problem(d.path, atValue, describe(key, other)))
			}
		}
	}
	where := func(d def) string {
		return fmt.Sprintf("%s in %s", strings.Join(d.path, "."), strings.Join(d.u.Files, ", "))
	}

	pods, services, external, portals := map[string][]def{}, map[string][]def{}, map[string][]def{}, map[string][]def{}
	for _, u := range valid {
		for _, p := range u.Pods {
			pods[p.Name] = append(pods[p.Name], def{u, []string{"pods", p.Name}})
		}
		for _, s := range u.Services {
			services[s.Name] = append(services[s.Name], def{u, []string{"services", s.Name}})
			if s.PortalIP != "" {
				portals[s.PortalIP] = append(portals[s.PortalIP], def{u, []string{"services", s.Name, "portalIP"}})
			}
			for i, p := range s.Ports {
				if p.ExternalPort != 0 {
					// A duplicate externalPort has no field of its own to
					// blame: the problem points at the port, the
					// enclosing field (SPEC §7).
					k := strconv.Itoa(p.ExternalPort)
					external[k] = append(external[k], def{u, []string{"services", s.Name, "ports", strconv.Itoa(i)}})
				}
			}
		}
	}
	// A name defined twice in one unit cannot happen (CUE unifies it), so
	// every pair here is two units.
	report(pods, false, func(name string, other def) string {
		return fmt.Sprintf("pod %q is also defined in %s", name, strings.Join(other.u.Files, ", "))
	})
	report(services, false, func(name string, other def) string {
		return fmt.Sprintf("service %q is also defined in %s", name, strings.Join(other.u.Files, ", "))
	})
	report(external, false, func(port string, other def) string {
		return fmt.Sprintf("externalPort %s is also used by %s", port, where(other))
	})
	report(portals, true, func(ip string, other def) string {
		return fmt.Sprintf("portalIP %s is also used by %s", ip, where(other))
	})

	// Pods by label, so that matching a selector looks at the pods that
	// carry one of its labels rather than at every pod of the node.
	type podRef struct {
		u   *Unit
		pod *Pod
	}
	byLabel := map[string][]podRef{}
	for _, u := range valid {
		for i := range u.Pods {
			for k, v := range u.Pods[i].Labels {
				byLabel[k+"="+v] = append(byLabel[k+"="+v], podRef{u, &u.Pods[i]})
			}
		}
	}
	for _, u := range valid {
		for _, s := range u.Services {
			if len(s.Selector) == 0 {
				continue
			}
			var candidates []podRef
			for k, v := range s.Selector {
				if c := byLabel[k+"="+v]; candidates == nil || len(c) < len(candidates) {
					candidates = c
				}
			}
			for i, port := range s.Ports {
				if port.TargetPort.Name == "" {
					continue
				}
				for _, c := range candidates {
					if !Selects(s.Selector, c.pod.Labels) || declares(c.pod, port.TargetPort.Name) {
						continue
					}
					path := []string{"services", s.Name, "ports", strconv.Itoa(i), "targetPort"}
					out[u] = append(out[u], u.problem(path, true, fmt.Sprintf(
						"targetPort %q is not a port of any container of pod %q (%s), which the selector picks",
						port.TargetPort.Name, c.pod.Name, strings.Join(c.u.Files, ", "))))
				}
			}
		}
	}
	for u := range out {
		sortProblems(out[u])
	}
	return out
}

// declares reports whether a container of the pod has a port of that name.
func declares(p *Pod, name string) bool {
	for _, c := range p.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name {
				return true
			}
		}
	}
	return false
}

func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(
			strings.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			strings.Compare(a.Path, b.Path),
			strings.Compare(a.Message, b.Message),
		)
	})
}
