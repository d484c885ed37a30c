package netproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestPlanListeners(t *testing.T) {
	ip := netip.MustParseAddr
	ep := netip.MustParseAddrPort
	web := Service{Name: "web", PortalIP: ip("10.96.0.2"), Ports: []Port{{Name: "http", Port: 80, Endpoints: []netip.AddrPort{ep("10.88.0.5:8080")}}}}
	webExternal := Service{Name: "web", PortalIP: ip("10.96.0.2"), Ports: []Port{{Name: "http", Port: 80, ExternalPort: 30080}}}
	webOnDNSPort := Service{Name: "web", PortalIP: ip("10.96.0.2"), Ports: []Port{{Name: "http", Port: 80, ExternalPort: 53, Protocol: "UDP"}}}
	dns := Service{Name: "dns", PortalIP: ip("10.96.0.3"), Ports: []Port{{Name: "dns", Port: 53, Protocol: "UDP"}}}
	api := Service{Name: "api", PortalIP: ip("10.96.0.4"), Ports: []Port{{Port: 8080, ExternalPort: 30080}}}
	apiOnWebPortal := Service{Name: "api", PortalIP: ip("10.96.0.2"), Ports: []Port{{Name: "http", Port: 80}}}
	zeta := Service{Name: "zeta", PortalIP: ip("10.96.0.9"), Ports: []Port{{Name: "http", Port: 80, ExternalPort: 30080}}}
	noPortal := Service{Name: "broken", Ports: []Port{{Port: 80}}}
	twoProtocols := Service{Name: "dns", PortalIP: ip("10.96.0.3"), Ports: []Port{{Name: "dns", Port: 53, Protocol: "UDP"}, {Name: "dns", Port: 53}}}

	tk := func(addr string) listenerKey { return listenerKey{protocol: "TCP", addr: ep(addr)} }
	pk := func(service, port string) portKey { return portKey{service, port, "TCP"} }

	tests := []struct {
		name     string
		services []Service
		external netip.Addr // zero: 0.0.0.0
		current  map[listenerKey]portKey
		want     string
		errs     map[string]error // services that must be in errs, with an error they wrap
	}{
		{
			name: "nothing_wanted_and_nothing_open_is_an_empty_plan",
		},
		{
			name:     "a_new_service_port_opens_its_portal_listener",
			services: []Service{web},
			want:     "open TCP 10.96.0.2:80 web/http",
		},
		{
			name:     "an_unchanged_listener_is_kept",
			services: []Service{web},
			current:  map[listenerKey]portKey{tk("10.96.0.2:80"): pk("web", "http")},
			want:     "keep TCP 10.96.0.2:80 web/http",
		},
		{
			name:    "a_listener_no_service_wants_is_closed",
			current: map[listenerKey]portKey{tk("10.96.0.2:80"): pk("web", "http")},
			want:    "close TCP 10.96.0.2:80",
		},
		{
			name:     "an_address_that_moves_to_another_service_port_closes_and_opens_again",
			services: []Service{apiOnWebPortal},
			current:  map[listenerKey]portKey{tk("10.96.0.2:80"): pk("web", "http")},
			want:     "close TCP 10.96.0.2:80\nopen TCP 10.96.0.2:80 api/http",
		},
		{
			name:     "an_external_port_opens_on_the_external_address_after_the_portal",
			services: []Service{webExternal},
			want:     "open TCP 10.96.0.2:80 web/http\nopen TCP 0.0.0.0:30080 web/http",
		},
		{
			name:     "an_external_port_on_a_host_address_listens_there",
			services: []Service{webExternal},
			external: ip("192.0.2.1"),
			want:     "open TCP 10.96.0.2:80 web/http\nopen TCP 192.0.2.1:30080 web/http",
		},
		{
			name:     "a_wildcard_external_port_that_is_also_a_portal_port_shares_it",
			services: []Service{webOnDNSPort, dns},
			want:     "open UDP 10.96.0.3:53 dns/dns\nopen UDP 10.96.0.2:80 web/http\nopen UDP 0.0.0.0:53 shared web/http",
		},
		{
			name:     "a_shared_external_port_is_not_shared_on_a_host_address",
			services: []Service{webOnDNSPort, dns},
			external: ip("192.0.2.1"),
			want:     "open UDP 10.96.0.3:53 dns/dns\nopen UDP 10.96.0.2:80 web/http\nopen UDP 192.0.2.1:53 web/http",
		},
		{
			name:     "a_listener_that_becomes_shared_is_replaced",
			services: []Service{webOnDNSPort, dns},
			current: map[listenerKey]portKey{
				{protocol: "UDP", addr: ep("0.0.0.0:53")}:   {"web", "http", "UDP"},
				{protocol: "UDP", addr: ep("10.96.0.2:80")}: {"web", "http", "UDP"},
				{protocol: "UDP", addr: ep("10.96.0.3:53")}: {"dns", "dns", "UDP"},
			},
			want: "close UDP 0.0.0.0:53\nkeep UDP 10.96.0.3:53 dns/dns\nkeep UDP 10.96.0.2:80 web/http\nopen UDP 0.0.0.0:53 shared web/http",
		},
		{
			name:     "the_first_service_in_name_order_owns_a_contested_external_port",
			services: []Service{zeta, api},
			want: "open TCP 10.96.0.4:8080 api/8080\nopen TCP 0.0.0.0:30080 api/8080\nopen TCP 10.96.0.9:80 zeta/http\n" +
				"conflict TCP 0.0.0.0:30080 zeta/http (owned by api/8080)",
			errs: map[string]error{"zeta": ErrListenerConflict},
		},
		{
			name:     "a_conflict_keeps_the_owner_s_listener_open",
			services: []Service{zeta, api},
			current:  map[listenerKey]portKey{tk("0.0.0.0:30080"): pk("zeta", "http")},
			want: "close TCP 0.0.0.0:30080\nopen TCP 10.96.0.4:8080 api/8080\nopen TCP 0.0.0.0:30080 api/8080\nopen TCP 10.96.0.9:80 zeta/http\n" +
				"conflict TCP 0.0.0.0:30080 zeta/http (owned by api/8080)",
			errs: map[string]error{"zeta": ErrListenerConflict},
		},
		{
			name:     "a_service_port_whose_only_address_is_taken_is_still_served_without_listener",
			services: []Service{web, apiOnWebPortal},
			want:     "open TCP 10.96.0.2:80 api/http\nserve web/http TCP (no listener)\nconflict TCP 10.96.0.2:80 web/http (owned by api/http)",
			errs:     map[string]error{"web": ErrListenerConflict},
		},
		{
			name:     "an_invalid_service_gets_no_listener_and_an_error",
			services: []Service{noPortal, web},
			current:  map[listenerKey]portKey{tk("10.96.0.1:80"): pk("broken", "80")},
			want:     "close TCP 10.96.0.1:80\nopen TCP 10.96.0.2:80 web/http",
			errs:     map[string]error{"broken": ErrInvalidService},
		},
		{
			name:     "a_service_listed_twice_is_served_once",
			services: []Service{web, web},
			want:     "open TCP 10.96.0.2:80 web/http",
			errs:     map[string]error{"web": ErrInvalidService},
		},
		{
			name:     "one_port_name_with_two_protocols_is_two_service_ports",
			services: []Service{twoProtocols},
			want:     "open TCP 10.96.0.3:53 dns/dns\nopen UDP 10.96.0.3:53 dns/dns",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			external := tt.external
			if !external.IsValid() {
				external = netip.IPv4Unspecified()
			}
			pl := planListeners(tt.services, external, tt.current)
			if got := pl.String(); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
			if len(pl.errs) != len(tt.errs) {
				t.Errorf("errors for %d services, want %d: %v", len(pl.errs), len(tt.errs), pl.errs)
			}
			for service, want := range tt.errs {
				if !errors.Is(pl.errs[service], want) {
					t.Errorf("error of %s = %v, want %v", service, pl.errs[service], want)
				}
			}
			for _, p := range pl.ports {
				if !pl.wants(p.key) {
					t.Errorf("plan does not want its own port %v", p.key)
				}
			}
			if pl.wants(portKey{"nobody", "80", "TCP"}) {
				t.Error("plan wants a port no service has")
			}
		})
	}
}

func TestPlanListeners_keeps_each_service_port_s_endpoints_and_affinity(t *testing.T) {
	eps := []netip.AddrPort{netip.MustParseAddrPort("10.88.0.5:8080"), netip.MustParseAddrPort("10.88.0.6:8080")}
	svc := Service{Name: "web", PortalIP: netip.MustParseAddr("10.96.0.2"), SessionAffinity: AffinityClientIP,
		Ports: []Port{{Name: "http", Port: 80, Endpoints: eps}}}
	pl := planListeners([]Service{svc}, netip.IPv4Unspecified(), nil)
	if len(pl.ports) != 1 {
		t.Fatalf("ports = %d, want 1", len(pl.ports))
	}
	p := pl.ports[0]
	if got := p.port.Endpoints; len(got) != 2 || got[0] != eps[0] || got[1] != eps[1] {
		t.Errorf("endpoints = %v, want %v", got, eps)
	}
	if got := p.svc.affinityTimeout(); got != DefaultAffinityTimeout {
		t.Errorf("affinity timeout = %v, want %v", got, DefaultAffinityTimeout)
	}
	if !strings.Contains(pl.String(), "open TCP 10.96.0.2:80 web/http") {
		t.Errorf("plan = %s", pl)
	}
}

func TestPlanPorts_gives_another_data_path_the_proxy_s_decisions(t *testing.T) {
	ip := netip.MustParseAddr
	ep := netip.MustParseAddrPort
	web := Service{Name: "web", PortalIP: ip("10.96.0.2"), Ports: []Port{{Name: "http", Port: 80, ExternalPort: 30080, Endpoints: []netip.AddrPort{ep("10.88.0.5:8080")}}}}
	zeta := Service{Name: "zeta", PortalIP: ip("10.96.0.9"), Ports: []Port{{Port: 53, Protocol: "UDP"}, {Port: 81, ExternalPort: 30080}}}
	broken := Service{Name: "broken", Ports: []Port{{Port: 80}}}

	ports, errs := PlanPorts([]Service{zeta, broken, web}, ip("0.0.0.0"))
	var got []string
	for _, p := range ports {
		got = append(got, fmt.Sprintf("%s/%s/%s %v %d endpoints", p.Service.Name, p.Label, p.Protocol, p.Addrs, len(p.Port.Endpoints)))
	}
	want := []string{
		"web/http/TCP [10.96.0.2:80 0.0.0.0:30080] 1 endpoints",
		"zeta/53/UDP [10.96.0.9:53] 0 endpoints",
		"zeta/81/TCP [10.96.0.9:81] 0 endpoints", // web, first in name order, owns 0.0.0.0:30080
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !errors.Is(errs["broken"], ErrInvalidService) || !errors.Is(errs["zeta"], ErrListenerConflict) || errs["web"] != nil {
		t.Fatalf("errs = %v", errs)
	}
}
