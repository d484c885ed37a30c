package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cuelet/cuelet/reconcile"
	"github.com/cuelet/cuelet/reconcile/podman"
)

// logReader is what logs needs of podman.
type logReader interface {
	ListPods(ctx context.Context) ([]reconcile.ObservedPod, error)
	Logs(ctx context.Context, container string, o podman.LogOptions, stdout, stderr io.Writer) error
}

// showLogs writes the logs of one container of a managed replica, as
// `kubectl logs POD [CONTAINER]`: without a container name, the first of
// the replica's spec, said on stderr when there are others (kubectl's
// "Defaulted container" note), so that a script reading stdout gets only
// the log. Only node's replicas count: another agent's on the same podman
// is not this node's (SPEC §11).
func showLogs(ctx context.Context, src logReader, node, replica, container string, o podman.LogOptions, stdout, stderr io.Writer) error {
	pods, err := src.ListPods(ctx)
	if err != nil {
		return err
	}
	var pod *reconcile.ObservedPod
	for i := range pods {
		if pods[i].OwnedBy(node) && pods[i].Name == replica {
			pod = &pods[i]
		}
	}
	if pod == nil {
		return fmt.Errorf("no replica %q on this node (cuelet status lists them)", replica)
	}
	var names []string
	for _, c := range reconcile.ReplicaCondition(*pod).Containers {
		names = append(names, c.Name)
	}
	if container == "" {
		if len(names) == 0 {
			return fmt.Errorf("replica %s has no containers", replica)
		}
		container = names[0]
		if len(names) > 1 {
			fmt.Fprintf(stderr, "Defaulted container %q out of: %s\n", container, strings.Join(names, ", "))
		}
	}
	c, ok := pod.Container(container)
	if !ok {
		return fmt.Errorf("replica %s has no container %q; it has: %s", replica, container, strings.Join(names, ", "))
	}
	return src.Logs(ctx, c.Name, o, stdout, stderr)
}
