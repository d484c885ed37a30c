#!/usr/bin/env bash
# Measures the running agent (bin/cuelet, built by `make build`) against an
# isolated podman: the latency a file write adds on top of podman's own
# create and start, then memory and CPU at rest with 100 pods, then both
# with 1,000 units (OneOf1000Units). Needs root, podman, runc, netavark and
# busybox-static; see README.md beside this script. Takes about 6 minutes
# on a quiet machine.
#
#   agent/bench/run.sh
#   ITERATIONS=40 IDLE=5m agent/bench/run.sh
#   BENCH=WriteToRunning agent/bench/run.sh     # only the latency
#   BENCH=OneOf1000Units CUELET_BENCH_PROFILE=/tmp agent/bench/run.sh  # and the heap at rest
set -euo pipefail
# A fresh Debian machine has Go in /usr/local/go but not on PATH.
export PATH="$PATH:/usr/local/go/bin"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
make -s build
# The podman bindings' build tags, as the Makefile sets them.
export GOFLAGS="${GOFLAGS:-$(make -s goflags)}"
export CUELET_BIN="$repo/bin/cuelet"
export CUELET_BENCH_IDLE="${IDLE:-60s}"

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
if [[ "${BENCH:-WriteToRunning}" == *WriteToRunning* ]]; then
	go test -run '^$' -bench 'WriteToRunning' -benchtime "${ITERATIONS:-20}x" -timeout 30m ./agent/bench/
fi
if [[ "${BENCH:-Idle100Pods}" == *Idle100Pods* ]]; then
	go test -run '^$' -bench 'Idle100Pods' -benchtime 1x -timeout 30m ./agent/bench/
fi
if [[ "${BENCH:-OneOf1000Units}" == *OneOf1000Units* ]]; then
	go test -run '^$' -bench 'OneOf1000Units' -benchtime "${ITERATIONS:-20}x" -timeout 60m ./agent/bench/
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
