package reconcile

import (
	"reflect"
	"testing"

	"github.com/cuelet/cuelet/manifests"
)

// twoContainers is a replica of a pod with containers app and side under
// the given restart policy, everything running, as cuelet creates it.
func twoContainers(policy string) ObservedPod {
	p := pod("web", 1, "busybox:1")
	p.RestartPolicy = policy
	p.Containers = append(p.Containers, manifests.Container{Name: "side", Image: "busybox:1", ImagePullPolicy: "IfNotPresent"})
	return observed(p.ReplicaList("a.cue")[0])
}

func TestReplicaCondition(t *testing.T) {
	type state struct {
		container string // "infra", "app" or "side"
		state     string
		exitCode  int
	}
	tests := []struct {
		name    string
		policy  string
		set     []state
		edit    func(*ObservedPod)
		phase   Phase
		up      bool
		serving bool
		reason  string
		infraUp bool
	}{
		{
			name: "every_container_running_is_up_and_serves", policy: "Always",
			phase: PhaseRunning, up: true, serving: true, infraUp: true,
		},
		{
			name: "a_container_that_exited_0_under_OnFailure_has_finished_and_the_replica_is_up_but_serves_nothing", policy: "OnFailure",
			set:   []state{{"side", "exited", 0}},
			phase: PhaseRunning, up: true, reason: "container side exited (exit code 0)", infraUp: true,
		},
		{
			name: "every_container_exited_0_under_OnFailure_is_a_succeeded_replica", policy: "OnFailure",
			set:   []state{{"app", "exited", 0}, {"side", "exited", 0}},
			phase: PhaseSucceeded, up: true, reason: "container app exited (exit code 0)", infraUp: true,
		},
		{
			name: "every_container_exited_0_under_Never_is_a_succeeded_replica", policy: "Never",
			set:   []state{{"app", "exited", 0}, {"side", "stopped", 0}},
			phase: PhaseSucceeded, up: true, reason: "container app exited (exit code 0)", infraUp: true,
		},
		{
			name: "a_container_that_exited_0_under_Always_is_down", policy: "Always",
			set:   []state{{"app", "exited", 0}},
			phase: PhaseFailed, reason: "container app exited (exit code 0)", infraUp: true,
		},
		{
			name: "a_container_that_exited_non_zero_under_OnFailure_has_failed", policy: "OnFailure",
			set:   []state{{"side", "exited", 1}},
			phase: PhaseFailed, reason: "container side exited (exit code 1)", infraUp: true,
		},
		{
			name: "a_container_that_exited_non_zero_under_Never_has_failed_even_when_another_finished_well", policy: "Never",
			set:   []state{{"app", "exited", 0}, {"side", "exited", 2}},
			phase: PhaseFailed, reason: "container side exited (exit code 2)", infraUp: true,
		},
		{
			name: "a_container_created_but_never_started_is_pending", policy: "OnFailure",
			set:   []state{{"side", "created", 0}},
			phase: PhasePending, reason: "container side created", infraUp: true,
		},
		{
			name: "a_missing_container_is_pending", policy: "Always",
			edit:  func(p *ObservedPod) { p.Containers = p.Containers[:1] },
			phase: PhasePending, reason: "container side missing", infraUp: true,
		},
		{
			name: "a_paused_container_is_up_but_serves_nothing", policy: "Always",
			set:   []state{{"app", "paused", 0}},
			phase: PhaseRunning, up: true, reason: "container app paused", infraUp: true,
		},
		{
			name: "a_stopping_container_is_left_to_podman_and_serves_nothing", policy: "Always",
			set:   []state{{"side", "stopping", 0}},
			phase: PhaseRunning, up: true, reason: "container side stopping", infraUp: true,
		},
		{
			name: "an_exited_infra_container_fails_the_replica_whatever_its_containers_do", policy: "OnFailure",
			set:   []state{{"infra", "exited", 0}, {"app", "exited", 0}, {"side", "exited", 0}},
			phase: PhaseFailed, reason: "infra container exited",
		},
		{
			name: "a_created_infra_container_is_pending", policy: "Always",
			set:   []state{{"infra", "created", 0}, {"app", "created", 0}, {"side", "created", 0}},
			phase: PhasePending, reason: "infra container created",
		},
		{
			name: "a_paused_infra_container_is_up_but_serves_nothing", policy: "Always",
			set:   []state{{"infra", "paused", 0}},
			phase: PhaseRunning, up: true, reason: "infra container paused", infraUp: true,
		},
		{
			name: "a_pod_without_infra_container_is_pending", policy: "Always",
			edit:  func(p *ObservedPod) { p.InfraID, p.InfraState = "", "" },
			phase: PhasePending, reason: "infra container missing",
		},
		{
			name: "without_a_spec_label_every_container_podman_has_must_run", policy: "Never",
			set:   []state{{"side", "exited", 0}},
			edit:  func(p *ObservedPod) { delete(p.Labels, LabelSpec) },
			phase: PhaseFailed, reason: "container side exited (exit code 0)", infraUp: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := twoContainers(tt.policy)
			for _, s := range tt.set {
				if s.container == "infra" {
					p.InfraState = s.state
					continue
				}
				for i := range p.Containers {
					if p.Containers[i].Labels[LabelContainer] == s.container {
						p.Containers[i].State, p.Containers[i].ExitCode = s.state, s.exitCode
					}
				}
			}
			if tt.edit != nil {
				tt.edit(&p)
			}
			c := ReplicaCondition(p)
			got := []any{c.Phase, c.Up(), c.Serving, c.Reason, c.InfraUp}
			want := []any{tt.phase, tt.up, tt.serving, tt.reason, tt.infraUp}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("phase, up, serving, reason, infra up = %v, want %v", got, want)
			}
			if c.Running("app") != (p.Containers[0].State == "running") {
				t.Errorf("Running(app) = %v with app %s", c.Running("app"), p.Containers[0].State)
			}
		})
	}
}
