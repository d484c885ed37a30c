package netproxy

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// balancer picks endpoints round robin, with optional ClientIP affinity.
// One balancer serves all listeners of a service port (portal and external
// port share the rotation, as in kube-proxy).
type balancer struct {
	now func() time.Time

	mu  sync.Mutex
	eps []netip.AddrPort // never modified in place: pick hands out snapshots
	// next is the index the next round-robin pick starts from.
	next int
	// affinity is the ClientIP stickiness; 0 disables affinity.
	affinity time.Duration
	sticky   map[netip.Addr]stickyEntry
}

type stickyEntry struct {
	ep   netip.AddrPort
	last time.Time
}

func newBalancer(now func() time.Time) *balancer {
	return &balancer{now: now}
}

// set replaces the endpoints and the affinity setting and returns the
// endpoints that left the set.
func (b *balancer) set(eps []netip.AddrPort, affinity time.Duration) (removed []netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ep := range b.eps {
		if !slices.Contains(eps, ep) {
			removed = append(removed, ep)
		}
	}
	if !slices.Equal(b.eps, eps) {
		b.eps = slices.Clone(eps)
	}
	b.affinity = affinity
	switch {
	case affinity == 0:
		b.sticky = nil
	case b.sticky == nil:
		b.sticky = make(map[netip.Addr]stickyEntry)
	}
	for client, e := range b.sticky {
		if !slices.Contains(b.eps, e.ep) {
			delete(b.sticky, client)
		}
	}
	return removed
}

// pick returns a snapshot of the endpoints and the index to try first for
// a client; the caller tries the others in order (i+1, i+2, … modulo the
// length) when a dial fails. It returns nil when there are no endpoints.
func (b *balancer) pick(client netip.Addr) ([]netip.AddrPort, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.eps)
	if n == 0 {
		return nil, 0
	}
	var now time.Time
	if b.affinity > 0 {
		now = b.now()
		if e, ok := b.sticky[client]; ok && now.Sub(e.last) < b.affinity {
			if i := slices.Index(b.eps, e.ep); i >= 0 {
				b.sticky[client] = stickyEntry{e.ep, now}
				return b.eps, i
			}
		}
	}
	i := b.next % n
	b.next = (i + 1) % n
	if b.affinity > 0 {
		b.sticky[client] = stickyEntry{b.eps[i], now}
	}
	return b.eps, i
}

// stick records that client ended up on ep (after a failover), so that
// affinity follows the endpoint that answered.
func (b *balancer) stick(client netip.Addr, ep netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.affinity > 0 {
		b.sticky[client] = stickyEntry{ep, b.now()}
	}
}

// has reports whether ep is in the current set.
func (b *balancer) has(ep netip.AddrPort) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Contains(b.eps, ep)
}

// endpoints returns the current set.
func (b *balancer) endpoints() []netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eps
}

// expire forgets affinity entries idle for longer than the timeout, so the
// table does not grow with every client ever seen.
func (b *balancer) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.affinity == 0 {
		return
	}
	now := b.now()
	for client, e := range b.sticky {
		if now.Sub(e.last) >= b.affinity {
			delete(b.sticky, client)
		}
	}
}
