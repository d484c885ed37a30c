package netproxy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func eps(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 88, 0, byte(i + 2)}), 8080)
	}
	return out
}

func TestBalancer(t *testing.T) {
	client1 := netip.MustParseAddr("10.88.0.100")
	client2 := netip.MustParseAddr("10.88.0.101")
	type step struct {
		set      []netip.AddrPort // when not nil, replace endpoints first
		affinity time.Duration
		advance  time.Duration
		client   netip.Addr
		want     int // index into eps(3); -1 for none
	}
	e := eps(3)
	tests := []struct {
		name  string
		steps []step
	}{
		{"no_endpoints_pick_nothing", []step{{set: []netip.AddrPort{}, client: client1, want: -1}}},
		{"round_robin_goes_through_the_list_in_order", []step{
			{set: e, client: client1, want: 0},
			{client: client1, want: 1},
			{client: client2, want: 2},
			{client: client1, want: 0},
		}},
		{"client_ip_affinity_keeps_each_client_on_its_endpoint", []step{
			{set: e, affinity: time.Hour, client: client1, want: 0},
			{client: client2, want: 1},
			{client: client1, want: 0},
			{client: client2, want: 1},
		}},
		{"affinity_ends_after_the_timeout", []step{
			{set: e, affinity: time.Minute, client: client1, want: 0},
			{advance: time.Minute, client: client1, want: 1},
		}},
		{"affinity_to_a_removed_endpoint_is_forgotten", []step{
			{set: e, affinity: time.Hour, client: client1, want: 0},
			{set: e[1:], affinity: time.Hour, client: client1, want: 2},
		}},
		{"shrinking_the_list_keeps_picking_valid_endpoints", []step{
			{set: e, client: client1, want: 0},
			{client: client1, want: 1},
			{client: client1, want: 2},
			{set: e[:1], client: client1, want: 0},
			{client: client1, want: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(0, 0)}
			b := newBalancer(clock.Now)
			for i, s := range tt.steps {
				if s.set != nil {
					b.set(s.set, s.affinity)
				}
				clock.Advance(s.advance)
				got, idx := b.pick(s.client)
				if s.want < 0 {
					if got != nil {
						t.Fatalf("step %d: picked %v, want none", i, got[idx])
					}
					continue
				}
				if got == nil || got[idx] != e[s.want] {
					t.Fatalf("step %d: picked %v, want %v", i, got, e[s.want])
				}
			}
		})
	}
}

func TestBalancerSetReportsRemovedEndpoints(t *testing.T) {
	e := eps(3)
	b := newBalancer(time.Now)
	b.set(e, 0)
	removed := b.set([]netip.AddrPort{e[2], e[0]}, 0)
	if len(removed) != 1 || removed[0] != e[1] {
		t.Fatalf("removed = %v, want [%v]", removed, e[1])
	}
}

func BenchmarkPick(b *testing.B) {
	client := netip.MustParseAddr("10.88.0.100")
	for _, n := range []int{3, 100} {
		for _, affinity := range []time.Duration{0, time.Hour} {
			name := fmt.Sprintf("endpoints=%d/affinity=%v", n, affinity > 0)
			b.Run(name, func(b *testing.B) {
				bal := newBalancer(time.Now)
				bal.set(eps(n), affinity)
				for b.Loop() {
					bal.pick(client)
				}
			})
		}
	}
}
