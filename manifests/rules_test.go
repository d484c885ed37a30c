package manifests_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cuelet/cuelet/manifests"
)

func TestNodeRules(t *testing.T) {
	hostPath := "pods: web: {\n\tcontainers: app: image: \"x\"\n\tvolumes: site: hostPath: path: \"/srv/www\"\n}\n"
	portal := func(ip string) string {
		return "services: web: {\n\tselector: app: \"web\"\n\tportalIP: \"" + ip + "\"\n\tports: [{port: 80}]\n}\n"
	}
	tests := []struct {
		name    string
		src     string
		allowed []string
		want    []string
	}{
		{"host_path_without_allowed_prefixes_names_the_flag", hostPath, nil, []string{
			`a.cue:3:33: pods.web.volumes.site.hostPath.path: hostPath "/srv/www" is not allowed: no prefix is allowed (see --allowed-host-paths)`}},
		{"host_path_under_an_allowed_prefix_is_valid", hostPath, []string{"/data", "/srv"}, nil},
		{"host_path_equal_to_an_allowed_prefix_is_valid", hostPath, []string{"/srv/www/"}, nil},
		{"host_path_beside_an_allowed_prefix_is_rejected", hostPath, []string{"/sr", "/srv/w"}, []string{
			`a.cue:3:33: pods.web.volumes.site.hostPath.path: hostPath "/srv/www" is not under an allowed prefix (--allowed-host-paths /sr,/srv/w)`}},
		{"portal_ip_inside_the_range_is_valid", portal("10.96.0.20"), nil, nil},
		{"portal_ip_outside_the_range_is_rejected", portal("10.97.0.1"), nil, []string{
			`a.cue:3:12: services.web.portalIP: portalIP 10.97.0.1 is outside the portal range 10.96.0.0/16 (--portal-cidr)`}},
		{"portal_ip_on_the_network_address_is_rejected", portal("10.96.0.0"), nil, []string{
			`a.cue:3:12: services.web.portalIP: portalIP 10.96.0.0 is the network address of the portal range 10.96.0.0/16 (--portal-cidr)`}},
		{"portal_ip_on_the_dns_address_is_rejected", portal("10.96.0.10"), nil, []string{
			`a.cue:3:12: services.web.portalIP: portalIP 10.96.0.10 is reserved for the node's DNS server (--dns-address)`}},
		{"portal_ip_on_the_broadcast_address_is_rejected", portal("10.96.255.255"), nil, []string{
			`a.cue:3:12: services.web.portalIP: portalIP 10.96.255.255 is the broadcast address of the portal range 10.96.0.0/16 (--portal-cidr)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, map[string]string{"a.cue": tt.src})
			opts := manifests.Options{
				AllowedHostPaths: tt.allowed, PortalCIDR: netip.MustParsePrefix("10.96.0.0/16"),
				DNSAddress: netip.MustParseAddr("10.96.0.10"),
			}
			_, problems := loadDir(t, dir, opts)
			equal(t, "problems", problems, tt.want)
		})
	}
}

func TestCrossUnitRules(t *testing.T) {
	web := "pods: web: {\n\tlabels: app: \"web\"\n\tcontainers: app: {image: \"x\", ports: [{name: \"http\", containerPort: 80}]}\n}\n"
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"pod_defined_by_two_units_is_an_error_in_both", map[string]string{
			"a.cue":     web,
			"sub/b.cue": "// the same name\n" + web,
		}, []string{
			`a.cue:1:7: pods.web: pod "web" is also defined in sub/b.cue`,
			`sub/b.cue:2:7: pods.web: pod "web" is also defined in a.cue`,
		}},
		{"service_defined_by_two_units_is_an_error_in_both", map[string]string{
			"a.cue": "services: db: {endpoints: [\"192.0.2.1:5432\"], ports: [{port: 5432}]}\n",
			"b.cue": "services: db: {endpoints: [\"192.0.2.2:5432\"], ports: [{port: 5432}]}\n",
		}, []string{
			`a.cue:1:11: services.db: service "db" is also defined in b.cue`,
			`b.cue:1:11: services.db: service "db" is also defined in a.cue`,
		}},
		{"external_port_used_twice_is_an_error_at_both_ports", map[string]string{
			"a.cue": "services: a: {selector: app: \"a\", ports: [{port: 80, externalPort: 30080}]}\n",
			"b.cue": "services: b: {selector: app: \"b\", ports: [{name: \"x\", port: 81}, {name: \"y\", port: 80, externalPort: 30080}]}\n",
		}, []string{
			`a.cue:1:43: services.a.ports.0: externalPort 30080 is also used by services.b.ports.1 in b.cue`,
			`b.cue:1:66: services.b.ports.1: externalPort 30080 is also used by services.a.ports.0 in a.cue`,
		}},
		{"external_port_used_twice_in_one_unit_is_an_error_at_both_ports", map[string]string{
			"a.cue": "services: a: {selector: app: \"a\", ports: [{name: \"x\", port: 80, externalPort: 30080}, {name: \"y\", port: 81, externalPort: 30080}]}\n",
		}, []string{
			`a.cue:1:43: services.a.ports.0: externalPort 30080 is also used by services.a.ports.1 in a.cue`,
			`a.cue:1:87: services.a.ports.1: externalPort 30080 is also used by services.a.ports.0 in a.cue`,
		}},
		{"fixed_portal_ip_used_twice_is_an_error_in_both", map[string]string{
			"a.cue": "services: a: {selector: app: \"a\", portalIP: \"10.96.0.9\", ports: [{port: 80}]}\n",
			"b.cue": "services: b: {selector: app: \"b\", portalIP: \"10.96.0.9\", ports: [{port: 80}]}\n",
		}, []string{
			`a.cue:1:45: services.a.portalIP: portalIP 10.96.0.9 is also used by services.b.portalIP in b.cue`,
			`b.cue:1:45: services.b.portalIP: portalIP 10.96.0.9 is also used by services.a.portalIP in a.cue`,
		}},
		{"named_target_port_declared_by_the_selected_pod_is_valid", map[string]string{
			"web.cue": web,
			"svc.cue": "services: web: {selector: app: \"web\", ports: [{port: 80, targetPort: \"http\"}]}\n",
		}, nil},
		{"named_target_port_missing_from_a_selected_pod_is_an_error_in_the_service", map[string]string{
			"web.cue": web,
			"svc.cue": "services: web: {selector: app: \"web\", ports: [{port: 80, targetPort: \"https\"}]}\n",
		}, []string{
			`svc.cue:1:70: services.web.ports.0.targetPort: targetPort "https" is not a port of any container of pod "web" (web.cue), which the selector picks`,
		}},
		{"selector_that_picks_no_pod_is_valid", map[string]string{
			"web.cue": web,
			"svc.cue": "services: web: {selector: app: \"nothing\", ports: [{port: 80, targetPort: \"https\"}]}\n",
		}, nil},
		{"an_invalid_unit_takes_no_part", map[string]string{
			"a.cue": web,
			"b.cue": "pods: web: {replicas: 200, containers: app: image: \"x\"}\n",
		}, []string{
			`b.cue:1:23: pods.web.replicas: 200 is above the maximum 100`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, tt.files)
			_, problems := loadDir(t, dir, defaultOpts)
			equal(t, "problems", problems, tt.want)
		})
	}
}

func TestCrossUnitProblemsChangesNothing(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.cue": podFile("web")})
	units, err := manifests.LoadDir(context.Background(), dir, defaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	twice := []*manifests.Unit{units[0], units[0].Clone()}
	twice[1].ID = "copy"
	found := manifests.CrossUnitProblems(twice)
	if len(found[twice[0]]) != 1 || len(found[twice[1]]) != 1 {
		t.Fatalf("found %v, want one problem in each unit", found)
	}
	if !units[0].Valid() || len(units[0].Pods) != 1 {
		t.Fatalf("CrossUnitProblems changed the unit: %+v", units[0])
	}
	manifests.CheckCrossUnit(twice[1:])
	manifests.CheckCrossUnit(twice)
	if units[0].Valid() || twice[1].Valid() || len(twice[1].Pods) != 0 {
		t.Fatalf("CheckCrossUnit left the units valid: %+v %+v", units[0], twice[1])
	}
}
