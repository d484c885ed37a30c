// Package bench measures the running agent (`cuelet run`, the real
// binary) against an isolated podman: how much a file write costs on top
// of podman's own create and start, and what the agent costs at rest with
// 100 pods. Run it with agent/bench/run.sh; see README.md beside it.
package bench
