// Package reconcile makes the node's podman pods what the valid units say:
// a pure planner turns desired replicas and observed pods into actions, and
// a thin applier carries them out through the Podman interface it defines.
// What it decides and how pods map onto podman: docs/design.md.
package reconcile
