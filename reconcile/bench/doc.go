// Package bench holds cuelet's benchmarks against a real podman; run them
// with reconcile/bench/run.sh (root, podman installed).
package bench
