package kernel

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy"
)

var (
	ip = netip.MustParseAddr
	ep = netip.MustParseAddrPort
)

func buildFor(external string, services ...netproxy.Service) *ruleset {
	ports, errs := netproxy.PlanPorts(services, ip(external))
	return build(buildConfig{table: "cuelet", cidr: netip.MustParsePrefix("10.96.0.0/16"), external: ip(external)}, ports, errs)
}

// objects returns the blocks of the ruleset's text whose first line
// starts with one of the prefixes, tabs shown as two spaces.
func objects(rs *ruleset, prefixes ...string) string {
	var out []string
	keep := false
	for _, line := range strings.Split(rs.String(), "\n") {
		if !strings.HasPrefix(line, "\t") {
			keep = slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(line, p) })
		}
		if keep {
			out = append(out, strings.ReplaceAll(line, "\t", "  "))
		}
	}
	return strings.Join(out, "\n")
}

func lines(l ...string) string { return strings.Join(l, "\n") }

func TestBuild(t *testing.T) {
	web := netproxy.Service{Name: "web", PortalIP: ip("10.96.0.2"), Ports: []netproxy.Port{{Name: "http", Port: 80,
		Endpoints: []netip.AddrPort{ep("10.88.0.5:8080"), ep("10.88.0.6:8080")}}}}
	sticky := web
	sticky.SessionAffinity, sticky.AffinityTimeout = netproxy.AffinityClientIP, 30*time.Second
	empty := netproxy.Service{Name: "dns", PortalIP: ip("10.96.0.3"), Ports: []netproxy.Port{{Port: 53, Protocol: "UDP", ExternalPort: 30053}}}
	external := netproxy.Service{Name: "web", PortalIP: ip("10.96.0.2"), Ports: []netproxy.Port{{Name: "http", Port: 80, ExternalPort: 30080,
		Endpoints: []netip.AddrPort{ep("10.88.0.5:8080")}}}}
	fixed := netproxy.Service{Name: "db", PortalIP: ip("10.96.0.4"), Ports: []netproxy.Port{{Port: 5432,
		Endpoints: []netip.AddrPort{ep("192.0.2.10:5432"), ep("192.0.2.10:5432"), ep("[2001:db8::1]:5432")}}}}

	tests := []struct {
		name     string
		services []netproxy.Service
		external string
		objects  []string // prefixes of the objects to compare
		want     string
		errs     map[string]error
	}{
		{
			name:     "a_service_port_takes_its_endpoints_in_turn_from_the_shared_map_of_turns",
			services: []netproxy.Service{web},
			objects:  []string{"counter", "map svc_ips", "map svc_turns", "map svc_sticky_turns", "chain svc-", "chain ep-", "set svc_hairpin", "set svc_endpoints"},
			want: lines(
				"counter svc-web/http/tcp",
				"map svc_ips { 10.96.0.2 . tcp . 80 : goto svc-web/http/tcp }",
				"set svc_hairpin { 10.88.0.5 . 10.88.0.5, 10.88.0.6 . 10.88.0.6 }",
				"set svc_endpoints { 10.88.0.5 . tcp . 8080, 10.88.0.6 . tcp . 8080 }",
				"map svc_turns { 0xfa36976a . 0 : 10.88.0.5:8080, 0xfa36976a . 1 : 10.88.0.6:8080 }",
				"map svc_sticky_turns {}",
				"chain svc-web/http/tcp",
				`  counter name "svc-web/http/tcp"`,
				"  dnat to 0xfa36976a . numgen inc mod 2 map @svc_turns",
			),
		},
		{
			name:     "client_ip_affinity_sends_a_known_client_to_its_endpoint_and_records_new_ones_with_the_timeout",
			services: []netproxy.Service{sticky},
			objects:  []string{"set aff-", "map svc_sticky_turns", "chain svc-", "chain ep-web/http/tcp__10.88.0.5"},
			want: lines(
				"map svc_sticky_turns { 0xfa36976a . 0 : goto ep-web/http/tcp__10.88.0.5/8080, 0xfa36976a . 1 : goto ep-web/http/tcp__10.88.0.6/8080 }",
				"set aff-web/http/tcp__10.88.0.5/8080/30s { dynamic timeout 30s }",
				"set aff-web/http/tcp__10.88.0.6/8080/30s { dynamic timeout 30s }",
				"chain ep-web/http/tcp__10.88.0.5/8080",
				"  update @aff-web/http/tcp__10.88.0.5/8080/30s { ip saddr }",
				"  dnat to 10.88.0.5:8080",
				"chain svc-web/http/tcp",
				`  counter name "svc-web/http/tcp"`,
				"  ip saddr @aff-web/http/tcp__10.88.0.5/8080/30s goto ep-web/http/tcp__10.88.0.5/8080",
				"  ip saddr @aff-web/http/tcp__10.88.0.6/8080/30s goto ep-web/http/tcp__10.88.0.6/8080",
				"  0xfa36976a . numgen inc mod 2 vmap @svc_sticky_turns",
			),
		},
		{
			name:     "a_port_without_endpoints_is_refused_at_its_portal_and_external_port_and_gets_no_chain",
			services: []netproxy.Service{empty},
			objects:  []string{"counter", "map svc_ips", "map svc_external", "set svc_noep", "chain svc-", "chain ep-"},
			want: lines(
				"counter svc-dns/53/udp",
				"map svc_ips {}",
				"map svc_external {}",
				"set svc_noep { 10.96.0.3 . udp . 53 }",
				"set svc_noep_external { udp . 30053 }",
			),
		},
		{
			name:     "an_external_port_is_served_on_every_local_address_outside_the_range",
			services: []netproxy.Service{external},
			objects:  []string{"map svc_ips", "map svc_external", "chain svc_services"},
			want: lines(
				"map svc_ips { 10.96.0.2 . tcp . 80 : goto svc-web/http/tcp }",
				"map svc_external { tcp . 30080 : goto svc-web/http/tcp }",
				"chain svc_services",
				"  ip daddr . meta l4proto . th dport vmap @svc_ips",
				"  ip daddr != 10.96.0.0/16 fib daddr type local meta l4proto . th dport vmap @svc_external",
			),
		},
		{
			name:     "an_external_port_on_a_given_address_is_served_there_only",
			services: []netproxy.Service{external},
			external: "192.0.2.1",
			objects:  []string{"map svc_ips", "map svc_external", "chain svc_services"},
			want: lines(
				"map svc_ips { 10.96.0.2 . tcp . 80 : goto svc-web/http/tcp, 192.0.2.1 . tcp . 30080 : goto svc-web/http/tcp }",
				"map svc_external {}",
				"chain svc_services",
				"  ip daddr . meta l4proto . th dport vmap @svc_ips",
			),
		},
		{
			name:     "fixed_endpoints_are_served_once_each_and_an_ipv6_one_is_reported",
			services: []netproxy.Service{fixed},
			objects:  []string{"map svc_turns"},
			want:     "map svc_turns { 0xc185c738 . 0 : 192.0.2.10:5432 }",
			errs:     map[string]error{"db": ErrNotIPv4},
		},
		{
			name:     "an_invalid_service_is_reported_and_left_out",
			services: []netproxy.Service{{Name: "broken", Ports: []netproxy.Port{{Port: 80}}}, web},
			objects:  []string{"counter"},
			want:     "counter svc-web/http/tcp",
			errs:     map[string]error{"broken": netproxy.ErrInvalidService},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			external := cmpOr(tt.external, "0.0.0.0")
			rs := buildFor(external, tt.services...)
			if got := objects(rs, tt.objects...); got != tt.want {
				t.Errorf("objects:\n%s\nwant:\n%s", got, tt.want)
			}
			for name, want := range tt.errs {
				if !errors.Is(rs.errs[name], want) {
					t.Errorf("error of %s = %v, want %v", name, rs.errs[name], want)
				}
			}
			for name, err := range rs.errs {
				if tt.errs[name] == nil {
					t.Errorf("unexpected error of %s: %v", name, err)
				}
			}
			// The rules depend on the services, not on their order.
			reversed := slices.Clone(tt.services)
			slices.Reverse(reversed)
			if again := buildFor(external, reversed...); again.String() != rs.String() {
				t.Errorf("the services in another order give other rules:\n%s\nand\n%s", rs, again)
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestBuild_fixed_chains_refuse_ports_without_endpoints_and_masquerade_only_hairpin_and_the_host(t *testing.T) {
	got := objects(buildFor("0.0.0.0"), "chain svc_prerouting", "chain svc_output", "chain svc_postrouting", "chain svc_input")
	want := lines(
		"chain svc_prerouting { type nat hook prerouting priority -100 }",
		"  jump svc_services",
		"chain svc_output { type nat hook output priority -100 }",
		"  jump svc_services",
		"chain svc_postrouting { type nat hook postrouting priority 100 }",
		"  ct status dnat ip saddr . ip daddr @svc_hairpin counter masquerade",
		"  ct status dnat fib saddr type local ip daddr . meta l4proto . th dport @svc_endpoints counter masquerade",
		"chain svc_input { type filter hook input priority 0 }",
		"  ct state new ip daddr . meta l4proto . th dport @svc_noep meta l4proto tcp counter reject with tcp reset",
		"  ct state new ip daddr . meta l4proto . th dport @svc_noep counter reject with icmp port-unreachable",
		"  ct state new ip daddr != 10.96.0.0/16 meta l4proto . th dport @svc_noep_external meta l4proto tcp counter reject with tcp reset",
		"  ct state new ip daddr != 10.96.0.0/16 meta l4proto . th dport @svc_noep_external counter reject with icmp port-unreachable",
	)
	if got != want {
		t.Fatalf("fixed chains:\n%s\nwant:\n%s", got, want)
	}
}

func TestCounterNames_round_trip(t *testing.T) {
	service, port, protocol, ok := parseCounterName(counterName("web", "http", "UDP"))
	if !ok || service != "web" || port != "http" || protocol != "UDP" {
		t.Fatalf("parse(counterName) = %q %q %q %v", service, port, protocol, ok)
	}
	if _, _, _, ok := parseCounterName("svc_ips"); ok {
		t.Fatal("a fixed object's name parsed as a counter's")
	}
}

func TestSlotOf_is_stable_and_moves_on_when_taken(t *testing.T) {
	taken := map[uint32]bool{}
	a := slotOf("web/http/tcp", taken)
	if again := slotOf("web/http/tcp", map[uint32]bool{}); again != a {
		t.Fatalf("slot of the same port: %#x then %#x", a, again)
	}
	if b := slotOf("web/http/tcp", taken); b != a+1 {
		t.Fatalf("a taken slot %#x gave %#x, want the next one", a, b)
	}
}
