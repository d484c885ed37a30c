#!/bin/sh
# Runs cuelet's pod benchmarks against an isolated podman (root, podman,
# busybox-static). Prints Go's benchmark lines: apply-ms/op, kubeplay-ms/op
# and ratio for 20 new pods; ns/op, writes/op and cold-ms for a no-op pass
# over 100 pods. BENCH=Apply20PodsTraced -v logs every podman API call of
# an apply and of kube play (see trace_test.go); PROCS=1 adds the programs
# podman runs (netavark, runc, conmon), traced with strace (procs_test.go).
set -eu
# A fresh Debian machine has Go in /usr/local/go but not on PATH.
export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/../.."
# The bindings' build tags, as the Makefile sets them.
GOFLAGS="${GOFLAGS:-$(make -s goflags)}"
export GOFLAGS
exec go test -run '^$' -bench "${BENCH:-Apply20PodsVsKubePlay|NoopPass100Pods}" -benchtime "${BENCHTIME:-3x}" -timeout 30m ./reconcile/bench/ "$@"
