package portal

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// ErrExhausted means every address of the portal range is taken.
var ErrExhausted = errors.New("portal range exhausted")

// Allocation is the outcome of one planning pass.
type Allocation struct {
	// Addrs has the portal of every desired service that got one.
	Addrs map[string]netip.Addr
	// Errors has, for every desired service without a portal, why. It is
	// nil when every service got an address.
	Errors map[string]error
}

// Plan decides the portal of every service in want (fixed address, or the
// zero netip.Addr to get one allocated), given the allocations in have.
// It does no I/O. The rules, in order:
//
//   - Every address of the range except its network and broadcast address
//     and the reserved ones (the DNS server's, SPEC §10; invalid ones, the
//     zero Addr for no DNS server, are ignored) can be allocated (for a
//     /31 or /32, every address). A service holding an address that became
//     reserved gets another one.
//   - A service keeps the address it holds as long as it stays in the desired
//     set and asks for no other fixed address. A service that asks for a
//     different fixed address releases its old one in the same pass, so that
//     two services can swap addresses in one edit.
//   - A fixed address must lie inside the range and must not be held by
//     another service; when several new services ask for the same free
//     address, none of them gets it (no winner by name order).
//   - Other services get the lowest free address, first from the upper part
//     of the range and then from the lowest addresses, which are left for
//     fixed addresses as long as possible (the way Kubernetes splits its
//     service range since KEP-3070). Addresses that any service asks for
//     are never handed out dynamically. Services are served in name order,
//     so the result is deterministic.
//   - A service that is no longer desired frees its address.
func Plan(cidr netip.Prefix, have, want map[string]netip.Addr, reserved ...netip.Addr) Allocation {
	cidr = cidr.Masked()
	out := Allocation{Addrs: make(map[string]netip.Addr, len(want))}
	fail := func(name string, err error) {
		if out.Errors == nil {
			out.Errors = make(map[string]error)
		}
		out.Errors[name] = err
	}
	r := newRange(cidr)
	r.reserved = reserved
	names := slices.Sorted(maps.Keys(want))

	// Who holds what: a desired service that wants its current address, or
	// no particular one, keeps it.
	holder := make(map[netip.Addr]string)
	for _, name := range names {
		h, ok := have[name]
		if !ok || !r.contains(h) {
			continue
		}
		if w := want[name]; !w.IsValid() || w == h {
			holder[h] = name
		}
	}

	// Fixed addresses, grouped by address to find contested ones.
	claims := make(map[netip.Addr][]string)
	for _, name := range names {
		w := want[name]
		if !w.IsValid() {
			continue
		}
		if err := r.whyNot(w); err != nil {
			if r.err != nil {
				fail(name, fmt.Errorf("portal %s: %w", w, err))
			} else {
				fail(name, fmt.Errorf("portal %s %w", w, err))
			}
			continue
		}
		claims[w] = append(claims[w], name)
	}
	for addr, claimants := range claims {
		if h, ok := holder[addr]; ok {
			for _, name := range claimants {
				if name == h {
					out.Addrs[name] = addr
				} else {
					fail(name, fmt.Errorf("portal %s is already allocated to service %q", addr, h))
				}
			}
			continue
		}
		if len(claimants) > 1 {
			for _, name := range claimants {
				fail(name, fmt.Errorf("portal %s is requested by more than one service (%s)", addr, strings.Join(claimants, ", ")))
			}
			continue
		}
		out.Addrs[claimants[0]] = addr
	}

	// Dynamic addresses: keep what is held, then fill the gaps.
	var pending []string
	for _, name := range names {
		if want[name].IsValid() {
			continue
		}
		if h, ok := have[name]; ok && holder[h] == name {
			out.Addrs[name] = h
			continue
		}
		pending = append(pending, name)
	}
	if len(pending) == 0 {
		return out
	}
	taken := func(a netip.Addr) bool {
		_, held := holder[a]
		_, claimed := claims[a]
		return held || claimed
	}
	next := r.iter(taken)
	for _, name := range pending {
		if r.err != nil {
			fail(name, fmt.Errorf("allocate portal: %w", r.err))
			continue
		}
		a, ok := next()
		if !ok {
			fail(name, fmt.Errorf("allocate portal in %s: %w", cidr, ErrExhausted))
			continue
		}
		out.Addrs[name] = a
	}
	return out
}
