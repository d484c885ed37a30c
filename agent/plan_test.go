package agent

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/netproxy/portal"
)

func TestServicePlan(t *testing.T) {
	web := manifests.Service{Name: "web", Selector: map[string]string{"app": "web"}, SessionAffinity: "None", SessionAffinityTimeoutSeconds: 10800,
		Ports: []manifests.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, TargetPort: manifests.PortRef{Name: "http"}, ExternalPort: 30080}, {Name: "dns", Protocol: "UDP", Port: 53, TargetPort: manifests.PortRef{Number: 53}}}}
	moved := web
	moved.Ports = []manifests.ServicePort{{Name: "http", Protocol: "TCP", Port: 8080, TargetPort: manifests.PortRef{Name: "http"}}}
	moved.Selector = map[string]string{"app": "web2"}
	ip := netip.MustParseAddr("10.96.0.20")
	before := map[string]appliedService{
		"web":  {Unit: "web.cue", Portal: "10.96.0.20", Service: web},
		"gone": {Unit: "old.cue", Portal: "10.96.0.30"},
	}
	tests := []struct {
		name   string
		before map[string]appliedService
		want   []ownedService
		alloc  portal.Allocation
		lines  []string
		// changes are those of the ~ lines, one per field.
		changes []string
	}{
		{
			name:  "new_service_shows_its_portal_ports_and_external_ports",
			want:  []ownedService{{unit: "web.cue", svc: &web}},
			alloc: portal.Allocation{Addrs: map[string]netip.Addr{"web": ip}},
			lines: []string{"+ service web 10.96.0.20:80,53/udp (external 30080)"},
		},
		{
			name:   "unchanged_service_plans_nothing_and_removed_one_goes",
			before: before,
			want:   []ownedService{{unit: "web.cue", svc: &web}},
			alloc:  portal.Allocation{Addrs: map[string]netip.Addr{"web": ip}},
			lines:  []string{"- service gone"},
		},
		{
			name:   "changed_service_says_what_changed",
			before: map[string]appliedService{"web": before["web"]},
			want:   []ownedService{{unit: "web.cue", svc: &moved}},
			alloc:  portal.Allocation{Addrs: map[string]netip.Addr{"web": netip.MustParseAddr("10.96.0.21")}},
			lines:  []string{"~ service web (portal 10.96.0.20 → 10.96.0.21, ports changed, selector changed)"},
			changes: []string{
				`portal: "10.96.0.20" → "10.96.0.21"`,
				`ports: [{"name":"http","protocol":"TCP","port":80,"targetPort":"http","externalPort":30080},{"name":"dns","protocol":"UDP","port":53,"targetPort":53}] → [{"name":"http","protocol":"TCP","port":8080,"targetPort":"http"}]`,
				`selector.app: "web" → "web2"`,
			},
		},
		{
			name:  "service_without_portal_is_reported",
			want:  []ownedService{{unit: "web.cue", svc: &web}},
			alloc: portal.Allocation{Addrs: map[string]netip.Addr{}, Errors: map[string]error{"web": errors.New("range exhausted")}},
			lines: []string{"! service web (no portal: range exhausted)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, changes []string
			for _, a := range servicePlan(tt.before, tt.want, tt.alloc) {
				got = append(got, a.Line)
				for _, c := range a.Changes {
					changes = append(changes, c.String())
				}
			}
			if !reflect.DeepEqual(got, tt.lines) {
				t.Fatalf("plan = %q, want %q", got, tt.lines)
			}
			if !reflect.DeepEqual(changes, tt.changes) {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(changes, "\n"), strings.Join(tt.changes, "\n"))
			}
		})
	}
}

func TestAppliedServices_round_trip(t *testing.T) {
	a := &appliedServices{path: filepath.Join(t.TempDir(), appliedServicesFile)}
	got, err := a.load()
	if err != nil || len(got) != 0 {
		t.Fatalf("load before save = %v, %v", got, err)
	}
	svc := manifests.Service{Name: "web", Ports: []manifests.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: manifests.PortRef{Number: 80}}}}
	if err := a.save([]ownedService{{unit: "web.cue", svc: &svc}}, map[string]netip.Addr{"web": netip.MustParseAddr("10.96.0.20")}); err != nil {
		t.Fatal(err)
	}
	got, err = (&appliedServices{path: a.path}).load()
	if err != nil {
		t.Fatal(err)
	}
	if got["web"].Portal != "10.96.0.20" || got["web"].Unit != "web.cue" || !reflect.DeepEqual(got["web"].Service.Ports, svc.Ports) {
		t.Fatalf("loaded %+v", got)
	}
	// What was saved is what plan compares with: the same service plans
	// nothing.
	alloc := portal.Allocation{Addrs: map[string]netip.Addr{"web": netip.MustParseAddr("10.96.0.20")}}
	if lines := servicePlan(got, []ownedService{{unit: "web.cue", svc: &svc}}, alloc); len(lines) != 0 {
		t.Fatalf("plan after save = %q, want nothing", lines)
	}
}
