// Package bench holds cuelet's benchmarks against a real podman; run them
// with bench/pods.sh (root, podman installed).
package bench
