package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile"
)

func TestContainerStatuses_count_ready_as_kubectl_does(t *testing.T) {
	started := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	def := &manifests.Pod{Name: "web", Containers: []manifests.Container{
		{Name: "app", Ports: []manifests.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}},
			ReadinessProbe: &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: "/healthz", Port: manifests.PortRef{Name: "http"}}, PeriodSeconds: 5}},
		{Name: "sidecar"},
	}}
	container := func(name, state string, exit, restarts int) reconcile.ObservedContainer {
		return reconcile.ObservedContainer{Name: "web-1-" + name, Labels: map[string]string{reconcile.LabelContainer: name},
			State: state, ExitCode: exit, RestartCount: restarts, StartedAt: started}
	}
	pod := func(infra string, cs ...reconcile.ObservedContainer) reconcile.ObservedPod {
		return reconcile.ObservedPod{Name: "web-1", InfraID: "infra", InfraState: infra, Containers: cs}
	}
	tests := []struct {
		name       string
		pod        reconcile.ObservedPod
		view       *replicaView
		wantReady  string // ready per container
		wantPhase  string
		wantReason string
	}{
		{
			name:      "running_and_probe_passing_is_ready",
			pod:       pod("running", container("app", "running", 0, 0), container("sidecar", "running", 0, 2)),
			view:      &replicaView{def: def, probeReady: map[string]bool{"app": true}},
			wantReady: "[true true]", wantPhase: "Running",
		},
		{
			name:      "a_failing_probe_makes_only_its_container_unready",
			pod:       pod("running", container("app", "running", 0, 0), container("sidecar", "running", 0, 0)),
			view:      &replicaView{def: def, probeReady: map[string]bool{"app": false}},
			wantReady: "[false true]", wantPhase: "Running",
		},
		{
			name:      "an_exited_container_is_not_ready",
			pod:       pod("running", container("app", "running", 0, 0), container("sidecar", "exited", 1, 3)),
			view:      &replicaView{def: def, probeReady: map[string]bool{"app": true}},
			wantReady: "[true false]", wantPhase: "Failed", wantReason: "container sidecar exited (exit code 1)",
		},
		{
			name:      "no_container_is_ready_without_the_infra_container",
			pod:       pod("exited", container("app", "running", 0, 0), container("sidecar", "running", 0, 0)),
			view:      &replicaView{def: def, probeReady: map[string]bool{"app": true}},
			wantReady: "[false false]", wantPhase: "Failed", wantReason: "infra container exited",
		},
		{
			name:      "a_replica_going_away_has_no_ready_container",
			pod:       pod("running", container("app", "running", 0, 0), container("sidecar", "running", 0, 0)),
			wantReady: "[false false]", wantPhase: "Running",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phase, reason, got := containerStatuses(tt.pod, tt.view)
			var ready []bool
			for _, c := range got {
				ready = append(ready, c.Ready)
			}
			if fmt.Sprint(ready) != tt.wantReady || phase != tt.wantPhase || reason != tt.wantReason {
				t.Fatalf("ready %v, phase %q, reason %q; want %s, %q, %q", ready, phase, reason, tt.wantReady, tt.wantPhase, tt.wantReason)
			}
		})
	}
}

func TestContainerStatuses_describe_the_probe_with_its_defaults_and_carry_restarts(t *testing.T) {
	def := &manifests.Pod{Name: "web", Containers: []manifests.Container{
		{Name: "app", Ports: []manifests.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}},
			ReadinessProbe: &manifests.Probe{HTTPGet: &manifests.HTTPGetAction{Path: "/healthz", Port: manifests.PortRef{Name: "http"}}, PeriodSeconds: 5}},
	}}
	p := reconcile.ObservedPod{Name: "web-1", InfraID: "i", InfraState: "running", Containers: []reconcile.ObservedContainer{
		{Name: "web-1-app", Labels: map[string]string{reconcile.LabelContainer: "app"}, State: "running", RestartCount: 4},
	}}
	_, _, got := containerStatuses(p, &replicaView{def: def, probeReady: map[string]bool{"app": true}})
	want := "http-get http://:8080/healthz delay=0s timeout=1s period=5s #success=1 #failure=3"
	if len(got) != 1 || got[0].Probe != want || got[0].Restarts != 4 || got[0].State != "running" || got[0].Phase != "Running" {
		t.Fatalf("got %+v\nwant probe %q, 4 restarts, running", got, want)
	}
}
