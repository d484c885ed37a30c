package portal

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func addrs(kv ...string) map[string]netip.Addr {
	m := make(map[string]netip.Addr, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		var a netip.Addr
		if kv[i+1] != "" {
			a = netip.MustParseAddr(kv[i+1])
		}
		m[kv[i]] = a
	}
	return m
}

func show(m map[string]netip.Addr) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k].String())
	}
	return strings.Join(parts, " ")
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name       string
		cidr       string
		have, want map[string]netip.Addr
		reserved   string // the DNS server's address, if any
		wantAddrs  map[string]netip.Addr
		wantErrs   map[string]string
	}{
		{
			name:      "new_service_gets_the_first_address_above_the_fixed_band",
			cidr:      "10.96.0.0/16",
			want:      addrs("web", ""),
			wantAddrs: addrs("web", "10.96.1.0"),
		},
		{
			name:      "services_are_served_in_name_order",
			cidr:      "10.96.0.0/16",
			want:      addrs("b", "", "a", "", "c", ""),
			wantAddrs: addrs("a", "10.96.1.0", "b", "10.96.1.1", "c", "10.96.1.2"),
		},
		{
			name:      "small_range_is_not_split_and_skips_the_network_address",
			cidr:      "10.96.0.0/28",
			want:      addrs("a", "", "b", ""),
			wantAddrs: addrs("a", "10.96.0.1", "b", "10.96.0.2"),
		},
		{
			name:      "existing_allocation_is_kept_after_a_restart_or_an_edit",
			cidr:      "10.96.0.0/16",
			have:      addrs("web", "10.96.7.7"),
			want:      addrs("web", "", "api", ""),
			wantAddrs: addrs("web", "10.96.7.7", "api", "10.96.1.0"),
		},
		{
			name:      "removed_service_frees_its_address_for_the_next_one",
			cidr:      "10.96.0.0/28",
			have:      addrs("old", "10.96.0.1", "keep", "10.96.0.2"),
			want:      addrs("keep", "", "new", ""),
			wantAddrs: addrs("keep", "10.96.0.2", "new", "10.96.0.1"),
		},
		{
			name:      "fixed_address_is_used_and_skipped_by_dynamic_allocation",
			cidr:      "10.96.0.0/28",
			want:      addrs("a", "", "fixed", "10.96.0.1"),
			wantAddrs: addrs("a", "10.96.0.2", "fixed", "10.96.0.1"),
		},
		{
			name:      "fixed_address_replaces_the_old_dynamic_one",
			cidr:      "10.96.0.0/16",
			have:      addrs("web", "10.96.1.0"),
			want:      addrs("web", "10.96.0.20"),
			wantAddrs: addrs("web", "10.96.0.20"),
		},
		{
			name:      "two_services_swap_fixed_addresses_in_one_pass",
			cidr:      "10.96.0.0/16",
			have:      addrs("a", "10.96.0.1", "b", "10.96.0.2"),
			want:      addrs("a", "10.96.0.2", "b", "10.96.0.1"),
			wantAddrs: addrs("a", "10.96.0.2", "b", "10.96.0.1"),
		},
		{
			name:      "fixed_address_outside_the_range_is_an_error",
			cidr:      "10.96.0.0/16",
			want:      addrs("web", "10.97.0.1", "ok", ""),
			wantAddrs: addrs("ok", "10.96.1.0"),
			wantErrs:  map[string]string{"web": "portal 10.97.0.1 is outside the portal range 10.96.0.0/16"},
		},
		{
			name:      "network_and_broadcast_addresses_are_not_allocatable",
			cidr:      "10.96.0.0/16",
			want:      addrs("net", "10.96.0.0", "bcast", "10.96.255.255"),
			wantAddrs: addrs(),
			wantErrs: map[string]string{
				"net":   "portal 10.96.0.0 is the network address of the portal range 10.96.0.0/16",
				"bcast": "portal 10.96.255.255 is the broadcast address of the portal range 10.96.0.0/16",
			},
		},
		{
			name:      "fixed_address_held_by_another_service_is_an_error_for_the_newcomer",
			cidr:      "10.96.0.0/28",
			have:      addrs("old", "10.96.0.1"),
			want:      addrs("old", "", "new", "10.96.0.1"),
			wantAddrs: addrs("old", "10.96.0.1"),
			wantErrs:  map[string]string{"new": `portal 10.96.0.1 is already allocated to service "old"`},
		},
		{
			name:      "holder_of_a_contested_fixed_address_keeps_it",
			cidr:      "10.96.0.0/28",
			have:      addrs("a", "10.96.0.5"),
			want:      addrs("a", "10.96.0.5", "b", "10.96.0.5"),
			wantAddrs: addrs("a", "10.96.0.5"),
			wantErrs:  map[string]string{"b": `portal 10.96.0.5 is already allocated to service "a"`},
		},
		{
			name:      "same_new_fixed_address_for_two_services_is_an_error_for_both",
			cidr:      "10.96.0.0/28",
			want:      addrs("a", "10.96.0.5", "b", "10.96.0.5", "c", ""),
			wantAddrs: addrs("c", "10.96.0.1"),
			wantErrs: map[string]string{
				"a": "portal 10.96.0.5 is requested by more than one service (a, b)",
				"b": "portal 10.96.0.5 is requested by more than one service (a, b)",
			},
		},
		{
			name:      "allocation_outside_a_changed_range_is_replaced",
			cidr:      "10.97.0.0/28",
			have:      addrs("web", "10.96.1.0"),
			want:      addrs("web", ""),
			wantAddrs: addrs("web", "10.97.0.1"),
		},
		{
			name:      "full_range_gives_an_exhausted_error",
			cidr:      "10.96.0.0/30",
			want:      addrs("a", "", "b", "", "c", ""),
			wantAddrs: addrs("a", "10.96.0.1", "b", "10.96.0.2"),
			wantErrs:  map[string]string{"c": "allocate portal in 10.96.0.0/30: portal range exhausted"},
		},
		{
			name:      "slash_32_range_has_its_one_address",
			cidr:      "10.96.0.9/32",
			want:      addrs("a", ""),
			wantAddrs: addrs("a", "10.96.0.9"),
		},
		{
			name:      "lower_band_is_used_once_the_upper_part_is_full",
			cidr:      "10.96.0.0/26",
			have:      fullUpperBand("10.96.0.0/26"),
			want:      withNew(fullUpperBand("10.96.0.0/26"), "late"),
			wantAddrs: withAddr(fullUpperBand("10.96.0.0/26"), "late", "10.96.0.1"),
		},
		{
			name:      "fixed_portal_on_the_dns_address_is_refused",
			cidr:      "10.96.0.0/16",
			reserved:  "10.96.0.10",
			want:      addrs("web", "10.96.0.10"),
			wantAddrs: addrs(),
			wantErrs:  map[string]string{"web": "portal 10.96.0.10 is reserved for the node's DNS server (--dns-address)"},
		},
		{
			name:      "dynamic_allocation_skips_the_dns_address",
			cidr:      "10.96.0.0/28",
			reserved:  "10.96.0.2",
			want:      addrs("a", "", "b", ""),
			wantAddrs: addrs("a", "10.96.0.1", "b", "10.96.0.3"),
		},
		{
			name:      "service_holding_the_dns_address_from_before_gets_another",
			cidr:      "10.96.0.0/28",
			reserved:  "10.96.0.2",
			have:      addrs("a", "10.96.0.1", "b", "10.96.0.2"),
			want:      addrs("a", "", "b", ""),
			wantAddrs: addrs("a", "10.96.0.1", "b", "10.96.0.3"),
		},
		{
			name:      "range_that_is_not_ipv4_is_an_error",
			cidr:      "fd00::/112",
			want:      addrs("a", ""),
			wantAddrs: addrs(),
			wantErrs:  map[string]string{"a": "allocate portal: portal range fd00::/112 is not IPv4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reserved netip.Addr // the zero Addr: none
			if tt.reserved != "" {
				reserved = netip.MustParseAddr(tt.reserved)
			}
			got := Plan(netip.MustParsePrefix(tt.cidr), tt.have, tt.want, reserved)
			if show(got.Addrs) != show(tt.wantAddrs) {
				t.Errorf("Addrs = %s\nwant   %s", show(got.Addrs), show(tt.wantAddrs))
			}
			gotErrs := map[string]string{}
			for k, err := range got.Errors {
				gotErrs[k] = err.Error()
			}
			if !maps.Equal(gotErrs, tt.wantErrs) {
				t.Errorf("Errors = %q\nwant     %q", gotErrs, tt.wantErrs)
			}
		})
	}
}

func TestPlanExhaustedIsASentinel(t *testing.T) {
	got := Plan(netip.MustParsePrefix("10.96.0.0/31"), nil, addrs("a", "", "b", "", "c", ""))
	if !errors.Is(got.Errors["c"], ErrExhausted) {
		t.Fatalf("Errors[c] = %v, want ErrExhausted", got.Errors["c"])
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	want := map[string]netip.Addr{}
	for i := range 300 {
		want[fmt.Sprintf("svc-%03d", i)] = netip.Addr{}
	}
	first := show(Plan(netip.MustParsePrefix("10.96.0.0/22"), nil, want).Addrs)
	for range 5 {
		if got := show(Plan(netip.MustParsePrefix("10.96.0.0/22"), nil, want).Addrs); got != first {
			t.Fatal("two plans of the same input differ")
		}
	}
}

// fullUpperBand returns allocations for every address of the upper part of
// a /26 (offsets 16..62).
func fullUpperBand(cidr string) map[string]netip.Addr {
	r := newRange(netip.MustParsePrefix(cidr))
	m := map[string]netip.Addr{}
	for off := r.dynamicStart; off <= r.last; off++ {
		m[fmt.Sprintf("s%02d", off)] = r.addr(off)
	}
	return m
}

func withNew(m map[string]netip.Addr, name string) map[string]netip.Addr {
	m = maps.Clone(m)
	for k := range m {
		m[k] = netip.Addr{}
	}
	m[name] = netip.Addr{}
	return m
}

func withAddr(m map[string]netip.Addr, name, addr string) map[string]netip.Addr {
	m = maps.Clone(m)
	m[name] = netip.MustParseAddr(addr)
	return m
}

func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{10, 1000} {
		want := map[string]netip.Addr{}
		for i := range n {
			want[fmt.Sprintf("svc-%04d", i)] = netip.Addr{}
		}
		cidr := netip.MustParsePrefix("10.96.0.0/16")
		have := Plan(cidr, nil, want).Addrs
		want["new"] = netip.Addr{}
		b.Run(fmt.Sprintf("services=%d/one_new", n), func(b *testing.B) {
			for b.Loop() {
				Plan(cidr, have, want)
			}
		})
	}
}
