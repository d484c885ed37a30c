#!/bin/sh
# Runs cuelet's pod benchmarks against an isolated podman (root, podman,
# busybox-static). Prints Go's benchmark lines: apply-ms/op, kubeplay-ms/op
# and ratio for 20 new pods; ns/op, writes/op and cold-ms for a no-op pass
# over 100 pods.
set -eu
cd "$(dirname "$0")/.."
exec go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-3x}" -timeout 30m ./bench/ "$@"
