package reconcile

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/manifests"
)

func pod(name string, replicas int, image string) *manifests.Pod {
	return &manifests.Pod{
		Name: name, Replicas: replicas, RestartPolicy: "Always",
		Containers: []manifests.Container{{Name: "app", Image: image, ImagePullPolicy: "IfNotPresent"}},
	}
}

func unit(id string, pods ...*manifests.Pod) *manifests.Unit {
	u := &manifests.Unit{ID: id}
	for _, p := range pods {
		u.Pods = append(u.Pods, *p)
	}
	return u
}

func invalidUnit(id string) *manifests.Unit {
	return &manifests.Unit{ID: id, Problems: []manifests.Problem{{Message: "broken"}}}
}

// running builds the observed pod that cuelet would have created for r,
// every container running.
func observed(r manifests.Replica) ObservedPod {
	ps, err := podSpec(r, "", "/run/cuelet", nil, nil)
	if err != nil {
		panic(err)
	}
	o := ObservedPod{Name: r.Name, ID: "id-" + r.Name, Labels: ps.Labels, State: "Running", InfraID: "infra-" + r.Name, InfraState: "running"}
	for _, c := range ps.Containers {
		o.Containers = append(o.Containers, ObservedContainer{Name: c.Name, ID: "id-" + c.Name, Labels: c.Labels, State: "running"})
	}
	return o
}

func observedAll(units ...*manifests.Unit) []ObservedPod {
	var out []ObservedPod
	for _, u := range units {
		for i := range u.Pods {
			for _, r := range u.Pods[i].ReplicaList(u.ID) {
				out = append(out, observed(r))
			}
		}
	}
	return out
}

func input(have []ObservedPod, units ...*manifests.Unit) Input {
	r := &Reconciler{}
	return r.input(Desired{Units: units}, have)
}

func lines(actions []Action) string {
	var s []string
	for _, a := range actions {
		s = append(s, a.String())
	}
	return strings.Join(s, "\n")
}

func TestPlan(t *testing.T) {
	web := pod("web", 1, "busybox:1")
	web3 := pod("web", 3, "busybox:1")
	webNew := pod("web", 1, "busybox:2")
	web3New := pod("web", 3, "busybox:2")
	db := pod("db", 1, "db:1")
	old := pod("old", 2, "old:1")

	stoppedApp := observedAll(unit("a.cue", web))
	stoppedApp[0].Containers[0].State = "exited"
	stoppedPod := observedAll(unit("a.cue", web))
	stoppedPod[0].InfraState, stoppedPod[0].Containers[0].State = "exited", "exited"
	lostContainer := observedAll(unit("a.cue", web))
	lostContainer[0].Containers = nil
	handMade := []ObservedPod{{Name: "web", Labels: map[string]string{}, InfraState: "running"}}
	neverPod := pod("job", 1, "busybox:1")
	neverPod.RestartPolicy = "Never"
	finishedJob := observedAll(unit("a.cue", neverPod))
	finishedJob[0].Containers[0].State = "exited"
	onFailure := pod("job", 1, "busybox:1")
	onFailure.RestartPolicy = "OnFailure"
	neverStarted := observedAll(unit("a.cue", onFailure))
	neverStarted[0].Containers[0].State = "created"
	crashed := observedAll(unit("a.cue", onFailure))
	crashed[0].Containers[0].State, crashed[0].Containers[0].ExitCode = "exited", 1
	doneOnFailure := observedAll(unit("a.cue", onFailure))
	doneOnFailure[0].Containers[0].State = "exited"
	failedJob := observedAll(unit("a.cue", neverPod))
	failedJob[0].Containers[0].State, failedJob[0].Containers[0].ExitCode = "exited", 1
	olderCuelet := observedAll(unit("a.cue", web, db))
	delete(olderCuelet[0].Labels, LabelRestartedBy) // web; db stays current
	olderCueletDown := observedAll(unit("a.cue", web))
	delete(olderCueletDown[0].Labels, LabelRestartedBy)
	olderCueletDown[0].Containers[0].State = "exited"

	tests := []struct {
		name  string
		have  []ObservedPod
		units []*manifests.Unit
		held  map[string]bool // Input.HeldBack
		// failed is Input.StartFailed
		failed map[string]bool
		want   string
	}{
		{
			name:  "new_pod_is_created",
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "+ pod web",
		},
		{
			name:  "unchanged_pods_are_adopted_without_action",
			have:  observedAll(unit("a.cue", web, db)),
			units: []*manifests.Unit{unit("a.cue", web, db)},
		},
		{
			name:  "image_changed_recreates_only_that_replica",
			have:  observedAll(unit("a.cue", web, db)),
			units: []*manifests.Unit{unit("a.cue", webNew, db)},
			want:  "~ pod web (image changed)",
		},
		{
			name:  "image_change_of_three_replicas_recreates_them_in_index_order",
			have:  observedAll(unit("a.cue", web3)),
			units: []*manifests.Unit{unit("a.cue", web3New)},
			want:  "~ pod web (image changed)\n~ pod web-1 (image changed)\n~ pod web-2 (image changed)",
		},
		{
			name:  "scale_up_adds_the_highest_indices",
			have:  observedAll(unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue", web3)},
			want:  "+ pod web-1\n+ pod web-2",
		},
		{
			name:  "scale_down_removes_highest_first_and_keeps_replica_0",
			have:  observedAll(unit("a.cue", web3)),
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "- pod web-2\n- pod web-1",
		},
		{
			name:  "removed_pod_definition_is_pruned",
			have:  observedAll(unit("a.cue", web, old)),
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "- pod old\n- pod old-1",
		},
		{
			name:  "removed_unit_prunes_its_pods",
			have:  observedAll(unit("a.cue", web), unit("b.cue", db)),
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "- pod db",
		},
		{
			name:  "invalid_unit_keeps_its_pods_while_other_units_apply",
			have:  observedAll(unit("a.cue", web), unit("b.cue", db)),
			units: []*manifests.Unit{invalidUnit("a.cue"), unit("b.cue", pod("db", 1, "db:2"))},
			want:  "~ pod db (image changed)",
		},
		{
			name:  "hand_made_pod_with_a_managed_name_is_a_conflict",
			have:  handMade,
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "! pod web (conflict: not managed by cuelet)",
		},
		{
			name:  "unmanaged_pods_that_nobody_wants_are_ignored",
			have:  []ObservedPod{{Name: "mine", Labels: map[string]string{}}},
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "+ pod web",
		},
		{
			name:  "container_stopped_by_hand_is_started",
			have:  stoppedApp,
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "~ pod web (container app stopped)",
		},
		{
			name:  "pod_stopped_by_hand_is_started",
			have:  stoppedPod,
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "~ pod web (pod stopped)",
		},
		{
			name:  "container_removed_by_hand_recreates_the_replica",
			have:  lostContainer,
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "~ pod web (container app missing)",
		},
		{
			name:  "finished_container_with_restart_policy_never_is_left_alone",
			have:  finishedJob,
			units: []*manifests.Unit{unit("a.cue", neverPod)},
		},
		{
			name:  "container_created_but_never_started_is_started_whatever_the_restart_policy",
			have:  neverStarted,
			units: []*manifests.Unit{unit("a.cue", onFailure)},
			want:  "~ pod job (container app not started)",
		},
		{
			name:  "container_that_failed_under_OnFailure_is_restarted_by_cuelet",
			have:  crashed,
			units: []*manifests.Unit{unit("a.cue", onFailure)},
			want:  "~ pod job (container app stopped)",
		},
		{
			name:  "container_that_exited_0_under_OnFailure_is_done_and_left_alone",
			have:  doneOnFailure,
			units: []*manifests.Unit{unit("a.cue", onFailure)},
		},
		{
			name:  "container_that_failed_under_Never_is_left_alone",
			have:  failedJob,
			units: []*manifests.Unit{unit("a.cue", neverPod)},
		},
		{
			name:  "exited_container_held_back_by_its_crash_loop_backoff_waits_for_a_later_pass",
			have:  stoppedApp,
			units: []*manifests.Unit{unit("a.cue", web)},
			held:  map[string]bool{stoppedApp[0].Containers[0].ID: true},
		},
		{
			name:  "container_that_never_started_is_started_even_when_held_back",
			have:  neverStarted,
			units: []*manifests.Unit{unit("a.cue", onFailure)},
			held:  map[string]bool{neverStarted[0].Containers[0].ID: true},
			want:  "~ pod job (container app not started)",
		},
		{
			name:   "container_whose_last_start_failed_is_made_anew_rather_than_started_again",
			have:   neverStarted,
			units:  []*manifests.Unit{unit("a.cue", onFailure)},
			failed: map[string]bool{"job": true},
			want:   "~ pod job (start failed)",
		},
		{
			name:   "stopped_pod_whose_last_start_failed_is_made_anew",
			have:   stoppedPod,
			units:  []*manifests.Unit{unit("a.cue", web)},
			failed: map[string]bool{"web": true},
			want:   "~ pod web (start failed)",
		},
		{
			name:   "failed_start_of_a_container_now_held_back_waits_for_its_backoff",
			have:   stoppedApp,
			units:  []*manifests.Unit{unit("a.cue", web)},
			held:   map[string]bool{stoppedApp[0].Containers[0].ID: true},
			failed: map[string]bool{"web": true},
		},
		{
			name:   "failed_start_of_a_pod_that_runs_again_changes_nothing",
			have:   observedAll(unit("a.cue", web)),
			units:  []*manifests.Unit{unit("a.cue", web)},
			failed: map[string]bool{"web": true},
		},
		{
			name:  "pod_of_an_older_cuelet_that_left_restarts_to_podman_is_recreated_once_as_a_rollout",
			have:  olderCuelet,
			units: []*manifests.Unit{unit("a.cue", web, db)},
			want:  "~ pod web (restarts move from podman to cuelet)",
		},
		{
			name:  "pod_of_an_older_cuelet_that_is_down_is_recreated_rather_than_started",
			have:  olderCueletDown,
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "~ pod web (restarts move from podman to cuelet)",
		},
		{
			name:  "pod_moved_to_another_unit_is_recreated",
			have:  observedAll(unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue"), unit("b.cue", web)},
			want:  "~ pod web (moved from unit a.cue)",
		},
		{
			name:  "zero_replicas_keeps_the_definition_and_runs_nothing",
			have:  observedAll(unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue", pod("web", 0, "busybox:1"))},
			want:  "- pod web",
		},
		{
			name:  "two_replicas_with_one_name_are_a_conflict_and_the_first_keeps_it",
			units: []*manifests.Unit{unit("a.cue", pod("web", 2, "busybox:1"), pod("web-1", 1, "busybox:1"))},
			want:  "+ pod web\n+ pod web-1\n! pod web-1 (conflict: replica 1 of pod web has the same name)",
		},
		{
			name:  "pod_removed_by_hand_is_recreated",
			have:  nil,
			units: []*manifests.Unit{unit("a.cue", web3)},
			want:  "+ pod web\n+ pod web-1\n+ pod web-2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(tt.have, tt.units...)
			in.HeldBack = tt.held
			in.StartFailed = tt.failed
			actions, err := Plan(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := lines(actions); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestPlanEmptyDirectoryGuard(t *testing.T) {
	have := observedAll(unit("a.cue", pod("web", 2, "busybox:1")))
	t.Run("no_unit_with_managed_pods_is_an_error_and_deletes_nothing", func(t *testing.T) {
		actions, err := Plan(input(have))
		if !errors.Is(err, ErrNoUnits) || len(actions) != 0 {
			t.Fatalf("got %v, %v; want ErrNoUnits and no action", actions, err)
		}
	})
	t.Run("allow_empty_removes_every_managed_pod", func(t *testing.T) {
		in := input(have)
		in.AllowEmpty = true
		actions, err := Plan(in)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := lines(actions), "- pod web\n- pod web-1"; got != want {
			t.Errorf("plan:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("no_unit_and_only_unmanaged_pods_is_fine", func(t *testing.T) {
		actions, err := Plan(input([]ObservedPod{{Name: "x", Labels: map[string]string{}}}))
		if err != nil || len(actions) != 0 {
			t.Fatalf("got %v, %v", actions, err)
		}
	})
	t.Run("only_invalid_units_is_not_empty_and_keeps_the_pods", func(t *testing.T) {
		actions, err := Plan(input(have, invalidUnit("a.cue")))
		if err != nil || len(actions) != 0 {
			t.Fatalf("got %v, %v", actions, err)
		}
	})
}

func TestPlanNodeSelector(t *testing.T) {
	node := map[string]string{manifests.HostnameLabel: "edge-1", "zone": "west"}
	onNode := func(p *manifests.Pod, sel map[string]string) *manifests.Pod {
		p.NodeSelector = sel
		return p
	}
	web := pod("web", 2, "busybox:1")
	webHere := onNode(pod("web", 2, "busybox:1"), map[string]string{manifests.HostnameLabel: "edge-1"})
	webThere := onNode(pod("web", 2, "busybox:1"), map[string]string{manifests.HostnameLabel: "edge-2"})
	db := pod("db", 1, "db:1")
	tests := []struct {
		name  string
		have  []ObservedPod
		units []*manifests.Unit
		want  string
	}{
		{
			name:  "a_pod_for_this_node_is_created",
			units: []*manifests.Unit{unit("a.cue", webHere)},
			want:  "+ pod web\n+ pod web-1",
		},
		{
			name:  "a_pod_for_another_node_is_not_created",
			units: []*manifests.Unit{unit("a.cue", webThere, db)},
			want:  "+ pod db",
		},
		{
			name:  "a_running_pod_that_stops_targeting_this_node_is_removed_with_the_reason",
			have:  observedAll(unit("a.cue", web, db)),
			units: []*manifests.Unit{unit("a.cue", webThere, db)},
			want:  "- pod web (nodeSelector does not match this node)\n- pod web-1 (nodeSelector does not match this node)",
		},
		{
			name:  "units_whose_pods_all_target_other_nodes_remove_the_pods_here",
			have:  observedAll(unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue", webThere)},
			want:  "- pod web (nodeSelector does not match this node)\n- pod web-1 (nodeSelector does not match this node)",
		},
		{
			name:  "a_selector_added_that_matches_this_node_recreates_nothing",
			have:  observedAll(unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue", webHere)},
		},
		{
			name:  "pods_of_an_invalid_unit_are_kept_whatever_their_node",
			have:  observedAll(unit("a.cue", webThere)),
			units: []*manifests.Unit{invalidUnit("a.cue")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Reconciler{cfg: Config{NodeLabels: node}}
			actions, err := Plan(r.input(Desired{Units: tt.units}, tt.have))
			if err != nil {
				t.Fatal(err)
			}
			if got := lines(actions); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// observedOn is observedAll for pods the agent of the named node made.
func observedOn(node string, units ...*manifests.Unit) []ObservedPod {
	out := observedAll(units...)
	for i := range out {
		out[i].Labels[LabelNode] = node
	}
	return out
}

// Two agents share one podman (SPEC §11): each plans over its own pods,
// and adopts as they are the pods of a cuelet that wrote no node label.
func TestPlanNodeOwnership(t *testing.T) {
	web := pod("web", 1, "busybox:1")
	webNew := pod("web", 1, "busybox:2")
	db := pod("db", 1, "db:1")
	dbOnB := pod("db", 1, "db:1")
	dbOnB.NodeSelector = map[string]string{manifests.HostnameLabel: "b"}
	tests := []struct {
		name  string
		have  []ObservedPod
		units []*manifests.Unit
		want  string
	}{
		{
			name:  "another_nodes_pod_is_ignored",
			have:  observedOn("b", unit("b.cue", db)),
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "+ pod web",
		},
		{
			name:  "another_nodes_pod_of_a_definition_for_that_node_is_ignored",
			have:  observedOn("b", unit("a.cue", dbOnB)),
			units: []*manifests.Unit{unit("a.cue", web, dbOnB)},
			want:  "+ pod web",
		},
		{
			name:  "a_wanted_name_held_by_another_node_is_a_conflict_that_names_the_node",
			have:  observedOn("b", unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue", web)},
			want:  "! pod web (conflict: managed by node b)",
		},
		{
			name:  "a_wanted_name_held_by_another_node_on_an_old_spec_is_still_a_conflict",
			have:  observedOn("b", unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue", webNew)},
			want:  "! pod web (conflict: managed by node b)",
		},
		{
			name:  "this_nodes_pods_are_planned_as_ever",
			have:  observedOn("a", unit("a.cue", web, db)),
			units: []*manifests.Unit{unit("a.cue", webNew)},
			want:  "~ pod web (image changed)\n- pod db",
		},
		{
			name:  "an_unlabelled_pod_of_an_older_cuelet_is_adopted_without_recreate",
			have:  observedAll(unit("a.cue", web)),
			units: []*manifests.Unit{unit("a.cue", web)},
		},
		{
			name:  "an_adopted_pod_is_updated_and_removed_as_this_nodes_own",
			have:  observedAll(unit("a.cue", web, db)),
			units: []*manifests.Unit{unit("a.cue", webNew)},
			want:  "~ pod web (image changed)\n- pod db",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Reconciler{cfg: Config{NodeLabels: map[string]string{manifests.HostnameLabel: "a"}}}
			actions, err := Plan(r.input(Desired{Units: tt.units}, tt.have))
			if err != nil {
				t.Fatal(err)
			}
			if got := lines(actions); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	t.Run("another_nodes_pods_do_not_trip_the_empty_directory_guard", func(t *testing.T) {
		actions, err := Plan(Input{Node: "a", Have: observedOn("b", unit("a.cue", web)), NoUnits: true})
		if err != nil || len(actions) != 0 {
			t.Fatalf("got %v, %v; want no action and no error", actions, err)
		}
		_, err = Plan(Input{Node: "a", Have: observedAll(unit("a.cue", web)), NoUnits: true})
		if !errors.Is(err, ErrNoUnits) {
			t.Fatalf("an adopted pod: err = %v, want ErrNoUnits", err)
		}
	})
}

// The node label says who made a pod, not what it runs: the spec hash,
// and so the pods of a cuelet from before the label, stay as they are.
func TestPodSpecLabelsTheNodeOutsideTheSpecHash(t *testing.T) {
	r := pod("web", 1, "busybox:1").ReplicaList("a.cue")[0]
	unnamed, err := podSpec(r, "", "/run/cuelet", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	named, err := podSpec(r, "edge-1", "/run/cuelet", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := unnamed.Labels[LabelNode]; ok {
		t.Errorf("a node without a name labelled its pod: %v", unnamed.Labels)
	}
	if named.Labels[LabelNode] != "edge-1" || named.Containers[0].Labels[LabelNode] != "edge-1" {
		t.Errorf("pod labels %v, container labels %v: want %s=edge-1 on both", named.Labels, named.Containers[0].Labels, LabelNode)
	}
	if named.Labels[LabelSpecHash] != unnamed.Labels[LabelSpecHash] || named.Labels[LabelSpec] != unnamed.Labels[LabelSpec] {
		t.Errorf("the node name changed the spec: %s vs %s", named.Labels[LabelSpecHash], unnamed.Labels[LabelSpecHash])
	}
}

func TestChangesNameEveryChangedField(t *testing.T) {
	base := pod("web", 1, "busybox:1")
	base.Containers[0].Env = map[string]string{"A": "1"}
	changed := pod("web", 1, "busybox:2")
	changed.Containers[0].Command = []string{"sh"}
	changed.Containers[0].Env = map[string]string{"A": "2"}
	changed.Containers[0].Resources.Memory = "64Mi"
	changed.Volumes = []manifests.Volume{{Name: "data", Persistent: &manifests.PersistentSource{}}}
	changed.DNS = &manifests.PodDNS{Servers: []string{"10.96.0.10"}}
	got, _ := changes(normalize(base).json(), normalize(changed))
	want := []string{"image changed", "command changed", "env changed", "resources changed", "volumes changed", "dns changed"}
	if !slices.Equal(got, want) {
		t.Errorf("changes = %q, want %q", got, want)
	}
	got, fields := changes("", normalize(changed))
	if !slices.Equal(got, []string{"spec changed"}) || len(fields) != 0 {
		t.Errorf("changes without a stored spec = %q, %v", got, fields)
	}
}

// Each changed field is one line of the plan, old → new, as kubectl diff
// and terraform show it; a map says which keys, a list of volumes which
// volumes.
func TestChanges_say_each_field_old_and_new(t *testing.T) {
	mod := func(f func(p *manifests.Pod)) *manifests.Pod {
		p := pod("web", 1, "busybox:1")
		p.Containers[0].Env = map[string]string{"A": "1", "B": "2"}
		p.Volumes = []manifests.Volume{{Name: "data", EmptyDir: &manifests.EmptyDirSource{}}}
		f(p)
		return p
	}
	base := mod(func(*manifests.Pod) {})
	tests := []struct {
		name string
		new  *manifests.Pod
		want []string
	}{
		{
			name: "image_old_and_new",
			new:  mod(func(p *manifests.Pod) { p.Containers[0].Image = "busybox:2" }),
			want: []string{`containers.app.image: "busybox:1" → "busybox:2"`},
		},
		{
			name: "env_says_each_key_changed_added_and_removed",
			new:  mod(func(p *manifests.Pod) { p.Containers[0].Env = map[string]string{"A": "9", "C": "3"} }),
			want: []string{`containers.app.env.A: "1" → "9"`, `containers.app.env.B: "2" → <none>`, `containers.app.env.C: <none> → "3"`},
		},
		{
			name: "lists_whole_and_unset_values_are_none",
			new: mod(func(p *manifests.Pod) {
				p.Containers[0].Args = []string{"-f", "x"}
				p.Containers[0].WorkingDir = "/app"
				p.Containers[0].Resources.CPUs = 0.5
			}),
			want: []string{`containers.app.args: <none> → ["-f","x"]`, `containers.app.workingDir: <none> → "/app"`, `containers.app.resources.cpus: <none> → 0.5`},
		},
		{
			name: "a_container_added_is_shown_whole",
			new: mod(func(p *manifests.Pod) {
				p.RestartPolicy = "Never"
				p.Containers = append(p.Containers, manifests.Container{Name: "log", Image: "busybox:1"})
			}),
			want: []string{`restartPolicy: "Always" → "Never"`, `containers.log: <none> → {"name":"log","image":"busybox:1"}`},
		},
		{
			name: "volumes_by_name",
			new: mod(func(p *manifests.Pod) {
				p.Volumes = []manifests.Volume{{Name: "data", HostPath: &manifests.HostPathSource{Path: "/srv"}}, {Name: "tmp", EmptyDir: &manifests.EmptyDirSource{}}}
			}),
			want: []string{`volumes.data: {"name":"data","type":"emptyDir"} → {"name":"data","type":"hostPath","path":"/srv"}`, `volumes.tmp: <none> → {"name":"tmp","type":"emptyDir"}`},
		},
		{
			name: "share_process_namespace_false_is_a_value",
			new:  mod(func(p *manifests.Pod) { p.ShareProcessNamespace = true }),
			want: []string{`shareProcessNamespace: false → true`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, fields := changes(normalize(base).json(), normalize(tt.new))
			var got []string
			for _, c := range fields {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// What a Start or a repair changes is the state of what is not running;
// a move, the labels that tie the pod to its unit.
func TestPlan_changes_of_starts_repairs_and_moves(t *testing.T) {
	web := pod("web", 1, "busybox:1")
	web.Containers = append(web.Containers, manifests.Container{Name: "log", Image: "busybox:1"})
	u := unit("web.cue", web)
	stopped := observedAll(u)
	stopped[0].Containers[1].State = "exited"
	missing := observedAll(u)
	missing[0].Containers = missing[0].Containers[:1]
	podDown := observedAll(u)
	podDown[0].InfraState = "exited"
	podDown[0].State = "Exited"
	for i := range podDown[0].Containers {
		podDown[0].Containers[i].State = "exited"
	}
	moved := observedAll(unit("old.cue", web))
	tests := []struct {
		name string
		have []ObservedPod
		want string
	}{
		{"stopped_container", stopped, `~ pod web (container log stopped) [containers.log.state: "stopped" → "running"]`},
		{"missing_container", missing, `~ pod web (container log missing) [containers.log.state: "missing" → "running"]`},
		{"stopped_pod", podDown, `~ pod web (pod stopped) [state: "stopped" → "running"]`},
		{"moved_between_units", moved, `~ pod web (moved from unit old.cue) [unit: "old.cue" → "web.cue"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			actions, err := Plan(input(tt.have, u))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range actions {
				var cs []string
				for _, c := range a.Changes {
					cs = append(cs, c.String())
				}
				got = append(got, a.String()+" ["+strings.Join(cs, "; ")+"]")
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("plan = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSpecHashLeavesOutWhatNeedsNoNewContainer(t *testing.T) {
	a := pod("web", 1, "busybox:1")
	b := pod("web", 5, "busybox:1")
	b.Labels = map[string]string{"app": "web"}
	b.NodeSelector = map[string]string{"zone": "west"}
	b.Containers[0].ImagePullPolicy = "Never"
	b.Containers[0].ReadinessProbe = &manifests.Probe{PeriodSeconds: 3}
	a.Volumes = []manifests.Volume{{Name: "conf", Files: map[string]string{"a": "1"}}}
	b.Volumes = []manifests.Volume{{Name: "conf", Files: map[string]string{"a": "2", "b": "3"}}}
	if SpecHash(a) != SpecHash(b) {
		t.Error("replicas, labels, nodeSelector, pull policy, probes or file contents changed the hash")
	}
	c := pod("web", 1, "busybox:1")
	c.Containers[0].Resources.Memory = "1Ki"
	d := pod("web", 1, "busybox:1")
	d.Containers[0].Resources.MemoryBytes = 1024
	if SpecHash(c) != SpecHash(d) {
		t.Error("memory as written and as bytes hash differently")
	}
	if SpecHash(a) == SpecHash(c) {
		t.Error("a resource change kept the hash")
	}
	// resolv.conf is written when the infra container is made: a change
	// of the pod's DNS settings (or of the node's, SPEC §9 "Upgrades")
	// needs new replicas.
	e := pod("web", 1, "busybox:1")
	e.DNS = &manifests.PodDNS{Servers: []string{"10.96.0.10"}, Searches: []string{"svc.cluster.local"}}
	if SpecHash(e) == SpecHash(pod("web", 1, "busybox:1")) {
		t.Error("DNS settings did not change the hash")
	}
	ps, err := podSpec(manifests.Replica{Name: "web", Pod: e}, "", t.TempDir(), nil, nil)
	if err != nil || !reflect.DeepEqual(ps.DNS, e.DNS) {
		t.Errorf("podSpec DNS = %+v (%v), want %+v", ps.DNS, err, e.DNS)
	}
}

func TestPodSpec_labels_the_replica_mounts_its_volumes_and_refuses_host_paths_outside_the_prefixes(t *testing.T) {
	p := pod("web", 2, "busybox:1")
	p.ShareProcessNamespace = true
	p.Containers[0].Env = map[string]string{"WEB_SERVICE_HOST": "mine"}
	p.Containers[0].VolumeMounts = []manifests.VolumeMount{
		{Name: "scratch", MountPath: "/scratch"}, {Name: "data", MountPath: "/data"},
		{Name: "site", MountPath: "/srv", ReadOnly: true}, {Name: "conf", MountPath: "/etc/app"},
	}
	p.Volumes = []manifests.Volume{
		{Name: "conf", Files: map[string]string{"a.conf": "x"}},
		{Name: "data", Persistent: &manifests.PersistentSource{}},
		{Name: "scratch", EmptyDir: &manifests.EmptyDirSource{}},
		{Name: "site", HostPath: &manifests.HostPathSource{Path: "/srv/www"}},
	}
	r := p.ReplicaList("u.cue")[1]
	env := []string{"DB_SERVICE_HOST=10.96.0.1", "WEB_SERVICE_HOST=10.96.0.2"}

	if _, err := podSpec(r, "", "/run/cuelet", []string{"/opt"}, env); !errors.Is(err, ErrHostPathNotAllowed) {
		t.Fatalf("hostPath outside the prefixes: err = %v", err)
	}
	if _, err := podSpec(r, "", "/run/cuelet", []string{"/srv/w"}, env); !errors.Is(err, ErrHostPathNotAllowed) {
		t.Fatalf("a prefix is a folder, not a string prefix: err = %v", err)
	}
	ps, err := podSpec(r, "", "/run/cuelet", []string{"/srv"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Name != "web-1" || !ps.SharePID || ps.Labels[LabelReplica] != "web-1" || ps.Labels[LabelIndex] != "1" ||
		ps.Labels[LabelUnit] != "u.cue" || ps.Labels[LabelPod] != "web" || ps.Labels[LabelManaged] != "true" {
		t.Errorf("pod: %+v", ps)
	}
	c := ps.Containers[0]
	if c.Name != "web-1-app" || c.Labels[LabelSpecHash] != ps.Labels[LabelSpecHash] || c.Labels[LabelContainer] != "app" {
		t.Errorf("container: %+v", c)
	}
	if c.Env["DB_SERVICE_HOST"] != "10.96.0.1" || c.Env["WEB_SERVICE_HOST"] != "mine" {
		t.Errorf("env: the container's own env must win over service variables: %v", c.Env)
	}
	wantMounts := []Mount{
		{Volume: "web-1_scratch_emptydir", Destination: "/scratch"},
		{Volume: "web-1-data", Destination: "/data"},
		{Source: "/srv/www", Destination: "/srv", ReadOnly: true, HostPath: true},
		{Source: "/run/cuelet/files/web-1/conf", Destination: "/etc/app", ReadOnly: true},
		{Source: "/run/cuelet/pods/web-1", Destination: "/run/cuelet", ReadOnly: true},
	}
	if !slices.Equal(c.Mounts, wantMounts) {
		t.Errorf("mounts:\n%+v\nwant\n%+v", c.Mounts, wantMounts)
	}
	var vols []string
	for _, v := range ps.Volumes {
		vols = append(vols, v.Name+"/"+v.Labels[LabelVolType]+"/"+map[bool]string{true: "fresh", false: "kept"}[v.Fresh])
	}
	if want := []string{"web-1-data/persistent/kept", "web-1_scratch_emptydir/emptyDir/fresh"}; !slices.Equal(vols, want) {
		t.Errorf("volumes %q, want %q", vols, want)
	}
}

// steps are plan lines with what Apply makes of them: [rollout] for a step
// the old replicas wait for, [grace Ns] for a removal's grace period.
func steps(actions []Action) string {
	var s []string
	for _, a := range actions {
		l := a.String()
		if a.Rollout {
			l += " [rollout]"
		}
		if a.Kind == Remove {
			l += fmt.Sprintf(" [grace %s]", a.Grace)
		}
		s = append(s, l)
	}
	return strings.Join(s, "\n")
}

// A rollout never costs more than one replica (SPEC §9): a replica that
// is missing, or down, while others still run the old spec is the
// rollout's current step, before any replica that serves.
func TestPlanRollout(t *testing.T) {
	web3 := pod("web", 3, "busybox:1")
	web3Bad := pod("web", 3, "busybox:1")
	web3Bad.Containers[0].Command = []string{"nosuchcommand"}
	web3Fixed := pod("web", 3, "busybox:2")

	// web's replacement could not be created: it is gone, the others
	// run the old spec.
	replacementFailed := observedAll(unit("a.cue", web3))[1:]
	// web's replacement was created but its container exited.
	replacementDown := observedAll(unit("a.cue", web3))[1:]
	bad := observedAll(unit("a.cue", web3Bad))[0]
	bad.Containers[0].State, bad.Containers[0].ExitCode = "exited", 127
	replacementDown = append([]ObservedPod{bad}, replacementDown...)
	// web-2 was stopped by hand before the change.
	lastDown := observedAll(unit("a.cue", web3))
	lastDown[2].InfraState, lastDown[2].Containers[0].State = "exited", "exited"

	web1 := pod("web", 1, "busybox:1")
	web1.TerminationGracePeriodSeconds = 30
	graceOnly := pod("web", 3, "busybox:1")
	graceOnly.TerminationGracePeriodSeconds = 30
	old := pod("old", 1, "old:1")
	old.TerminationGracePeriodSeconds = 7

	tests := []struct {
		name  string
		have  []ObservedPod
		units []*manifests.Unit
		want  string
	}{
		{
			name:  "a_replica_whose_replacement_failed_is_created_before_any_old_replica_is_replaced",
			have:  replacementFailed,
			units: []*manifests.Unit{unit("a.cue", web3Bad)},
			want:  "+ pod web [rollout]\n~ pod web-1 (command changed)\n~ pod web-2 (command changed)",
		},
		{
			name:  "a_corrected_edit_replaces_the_missing_replica_first",
			have:  replacementFailed,
			units: []*manifests.Unit{unit("a.cue", web3Fixed)},
			want:  "+ pod web [rollout]\n~ pod web-1 (image changed)\n~ pod web-2 (image changed)",
		},
		{
			name:  "a_corrected_edit_replaces_the_replica_that_is_down_first",
			have:  replacementDown,
			units: []*manifests.Unit{unit("a.cue", web3Fixed)},
			want:  "~ pod web (image changed, command changed) [rollout]\n~ pod web-1 (image changed)\n~ pod web-2 (image changed)",
		},
		{
			name:  "a_replica_that_is_down_goes_before_the_ones_that_serve",
			have:  lastDown,
			units: []*manifests.Unit{unit("a.cue", web3Fixed)},
			want:  "~ pod web-2 (image changed) [rollout]\n~ pod web (image changed)\n~ pod web-1 (image changed)",
		},
		{
			name:  "a_scale_up_without_a_spec_change_is_no_rollout",
			have:  observedAll(unit("a.cue", web1)),
			units: []*manifests.Unit{unit("a.cue", web3)},
			want:  "+ pod web-1\n+ pod web-2",
		},
		{
			name:  "changing_only_the_grace_period_recreates_nothing",
			have:  observedAll(unit("a.cue", web3)),
			units: []*manifests.Unit{unit("a.cue", graceOnly)},
		},
		{
			name:  "a_scale_down_stops_with_the_grace_period_of_now_a_gone_pod_with_its_own",
			have:  observedAll(unit("a.cue", web3, old)),
			units: []*manifests.Unit{unit("a.cue", web1)},
			want:  "- pod web-2 [grace 30s]\n- pod web-1 [grace 30s]\n- pod old [grace 7s]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			actions, err := Plan(input(tt.have, tt.units...))
			if err != nil {
				t.Fatal(err)
			}
			if got := steps(actions); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// The agent's rollout waits for a replaced replica that is not up, and
// calls the rollout stuck once the replica is older than its pod's
// progressDeadlineSeconds (SPEC §9).
func TestRolloutIsStuckAfterTheProgressDeadline(t *testing.T) {
	oldSpec := pod("web", 2, "busybox:1")
	newSpec := pod("web", 2, "busybox:2")
	newSpec.ProgressDeadlineSeconds = 600
	created := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	replaced := observedAll(unit("a.cue", newSpec))[0]
	replaced.Created = created
	replaced.Containers[0].State, replaced.Containers[0].ExitCode = "exited", 1
	have := append([]ObservedPod{replaced}, observedAll(unit("a.cue", oldSpec))[1:]...)
	actions, err := Plan(input(have, unit("a.cue", newSpec)))
	if err != nil {
		t.Fatal(err)
	}
	var ups []Action
	for _, a := range actions {
		if a.Kind == Recreate {
			ups = append(ups, a)
		}
	}
	if len(ups) != 1 || ups[0].Name != "web-1" {
		t.Fatalf("plan: %s; want web-1 recreated", lines(actions))
	}
	for _, tt := range []struct {
		after     time.Duration
		wantStuck bool
	}{{5 * time.Minute, false}, {11 * time.Minute, true}} {
		p := &pass{r: &Reconciler{cfg: Config{Now: func() time.Time { return created.Add(tt.after) }}}}
		why, stuck := p.rolloutBusy("web", ups, have)
		if why == "" || stuck != tt.wantStuck {
			t.Errorf("%s after web was replaced: why %q, stuck %v; want it to wait, stuck %v", tt.after, why, stuck, tt.wantStuck)
		}
	}
}
