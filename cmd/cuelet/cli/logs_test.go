package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman"
)

// fakeLogs lists pods and records which container's logs were asked for.
type fakeLogs struct {
	pods  []reconcile.ObservedPod
	asked []string
}

func (f *fakeLogs) ListPods(context.Context) ([]reconcile.ObservedPod, error) { return f.pods, nil }

func (f *fakeLogs) Logs(_ context.Context, container string, o podman.LogOptions, stdout, _ io.Writer) error {
	f.asked = append(f.asked, container)
	fmt.Fprintf(stdout, "log of %s tail %d\n", container, o.Tail)
	return nil
}

func TestShowLogs_picks_the_container_as_kubectl_logs_does(t *testing.T) {
	managed := map[string]string{reconcile.LabelManaged: "true"}
	ctr := func(name string) reconcile.ObservedContainer {
		return reconcile.ObservedContainer{Name: "web-1-" + name, Labels: map[string]string{reconcile.LabelContainer: name}}
	}
	pods := []reconcile.ObservedPod{
		{Name: "web-1", Labels: managed, Containers: []reconcile.ObservedContainer{ctr("app"), ctr("log")}},
		{Name: "db", Labels: managed, Containers: []reconcile.ObservedContainer{{Name: "db-db", Labels: map[string]string{reconcile.LabelContainer: "db"}}}},
		{Name: "other", Containers: []reconcile.ObservedContainer{{Name: "other-x"}}},
		{Name: "theirs", Labels: map[string]string{reconcile.LabelManaged: "true", reconcile.LabelNode: "b"},
			Containers: []reconcile.ObservedContainer{{Name: "theirs-app", Labels: map[string]string{reconcile.LabelContainer: "app"}}}},
		{Name: "mine", Labels: map[string]string{reconcile.LabelManaged: "true", reconcile.LabelNode: "a"},
			Containers: []reconcile.ObservedContainer{{Name: "mine-app", Labels: map[string]string{reconcile.LabelContainer: "app"}}}},
	}
	tests := []struct {
		name, replica, container string
		wantAsked, wantStderr    string
		wantErr                  string
	}{
		{name: "a_named_container", replica: "web-1", container: "log", wantAsked: "web-1-log"},
		{name: "the_first_container_with_a_note", replica: "web-1", wantAsked: "web-1-app",
			wantStderr: "Defaulted container \"app\" out of: app, log\n"},
		{name: "the_only_container_without_a_note", replica: "db", wantAsked: "db-db"},
		{name: "an_unknown_container_lists_the_others", replica: "web-1", container: "nope",
			wantErr: `replica web-1 has no container "nope"; it has: app, log`},
		{name: "an_unmanaged_pod_is_not_a_replica", replica: "other", wantErr: `no replica "other" on this node`},
		{name: "another_nodes_replica_on_the_same_podman_is_not_this_nodes", replica: "theirs", wantErr: `no replica "theirs" on this node`},
		{name: "this_nodes_labelled_replica", replica: "mine", wantAsked: "mine-app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeLogs{pods: pods}
			var stdout, stderr bytes.Buffer
			err := showLogs(context.Background(), f, "a", tt.replica, tt.container, podman.LogOptions{Tail: 3}, &stdout, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(f.asked, " "); got != tt.wantAsked || stderr.String() != tt.wantStderr || stdout.String() != "log of "+tt.wantAsked+" tail 3\n" {
				t.Fatalf("asked %q, stdout %q, stderr %q; want %q, its log, %q", got, stdout.String(), stderr.String(), tt.wantAsked, tt.wantStderr)
			}
		})
	}
}
