// Package bench measures cuelet apply against podman kube play, and no-op
// passes over 100 pods, on an isolated podman; run it with
// reconcile/bench/run.sh (see docs/performance.md).
package bench
