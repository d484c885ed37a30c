// Package bench measures the running agent (the real binary) against an
// isolated podman: a file write's overhead over podman's own create and
// start, and memory and CPU at rest with 100 pods. Run it with
// agent/bench/run.sh (see docs/performance.md).
package bench
