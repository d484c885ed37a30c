// Package reconcile makes the node's podman pods what the valid units say:
// a pure planner (Plan) turns desired replicas and observed pods into
// actions, and a thin applier (Reconciler.Apply) carries them out through
// the Podman interface. Decisions and layout: README.md beside this file.
package reconcile
