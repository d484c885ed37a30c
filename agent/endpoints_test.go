package agent

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
)

// observed makes a running replica whose containers declared ports (as the
// io.cuelet.spec label carries them).
func observed(name, ip string, ports string) reconcile.ObservedPod {
	return reconcile.ObservedPod{
		Name: name, IP: ip, InfraState: "running",
		Labels: map[string]string{
			reconcile.LabelManaged: "true",
			reconcile.LabelSpec:    fmt.Sprintf(`{"containers":[{"name":"app","ports":%s}]}`, ports),
		},
		Containers: []reconcile.ObservedContainer{{Name: name + "-app", State: "running"}},
	}
}

func TestPodEndpoints(t *testing.T) {
	web := &manifests.Pod{Name: "web", Labels: map[string]string{"app": "web", "tier": "front"}}
	api := &manifests.Pod{Name: "api", Labels: map[string]string{"app": "api"}}
	httpPorts := `[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"dns","containerPort":53,"protocol":"UDP"}]`
	tests := []struct {
		name     string
		svc      manifests.Service
		replicas []replicaView
		want     [][]string
	}{
		{
			name: "named_target_port_resolves_per_replica_in_name_order",
			svc: manifests.Service{Selector: map[string]string{"app": "web"}, Ports: []manifests.ServicePort{
				{Port: 80, Protocol: "TCP", TargetPort: manifests.PortRef{Name: "http"}},
			}},
			replicas: []replicaView{
				{def: web, pod: observed("web", "10.88.0.5", httpPorts), ready: true},
				{def: web, pod: observed("web-1", "10.88.0.6", `[{"name":"http","containerPort":9090,"protocol":"TCP"}]`), ready: true},
			},
			want: [][]string{{"10.88.0.5:8080", "10.88.0.6:9090"}},
		},
		{
			name: "replica_not_ready_gets_no_traffic",
			svc: manifests.Service{Selector: map[string]string{"app": "web"}, Ports: []manifests.ServicePort{
				{Port: 80, Protocol: "TCP", TargetPort: manifests.PortRef{Number: 8080}},
			}},
			replicas: []replicaView{
				{def: web, pod: observed("web", "10.88.0.5", httpPorts), ready: false},
				{def: web, pod: observed("web-1", "10.88.0.6", httpPorts), ready: true},
			},
			want: [][]string{{"10.88.0.6:8080"}},
		},
		{
			name: "selector_needs_every_label",
			svc: manifests.Service{Selector: map[string]string{"app": "web", "tier": "back"}, Ports: []manifests.ServicePort{
				{Port: 80, Protocol: "TCP", TargetPort: manifests.PortRef{Number: 8080}},
			}},
			replicas: []replicaView{{def: web, pod: observed("web", "10.88.0.5", httpPorts), ready: true}},
			want:     [][]string{nil},
		},
		{
			name: "named_port_must_match_the_protocol",
			svc: manifests.Service{Selector: map[string]string{"app": "web"}, Ports: []manifests.ServicePort{
				{Name: "a", Port: 53, Protocol: "TCP", TargetPort: manifests.PortRef{Name: "dns"}},
				{Name: "b", Port: 53, Protocol: "UDP", TargetPort: manifests.PortRef{Name: "dns"}},
			}},
			replicas: []replicaView{{def: web, pod: observed("web", "10.88.0.5", httpPorts), ready: true}},
			want:     [][]string{nil, {"10.88.0.5:53"}},
		},
		{
			name: "other_pods_and_replicas_without_ip_are_left_out",
			svc: manifests.Service{Selector: map[string]string{"app": "api"}, Ports: []manifests.ServicePort{
				{Port: 80, Protocol: "TCP", TargetPort: manifests.PortRef{Number: 8080}},
			}},
			replicas: []replicaView{
				{def: web, pod: observed("web", "10.88.0.5", httpPorts), ready: true},
				{def: api, pod: observed("api", "", httpPorts), ready: true},
				{def: api, pod: observed("api-1", "10.88.0.9", httpPorts), ready: true},
			},
			want: [][]string{{"10.88.0.9:8080"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podEndpoints(&tt.svc, tt.replicas)
			var gs [][]string
			for _, eps := range got {
				gs = append(gs, addrStringsOrNil(eps))
			}
			if !reflect.DeepEqual(gs, tt.want) {
				t.Fatalf("endpoints = %q, want %q", gs, tt.want)
			}
		})
	}
}

func addrStringsOrNil(eps []netip.AddrPort) []string {
	if len(eps) == 0 {
		return nil
	}
	return addrStrings(eps)
}
