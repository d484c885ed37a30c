#!/usr/bin/env bash
# Runs the shared L4 proxy benchmark harness (shared/bench/proxy, see its
# README.md) with cuelet's userspace proxy as the candidate, next to
# haproxy, nginx and socat. The report goes to stdout, progress to stderr.
#
#   bench/proxy/run.sh                     # about 3 minutes
#   REPEATS=1 DURATION=3s bench/proxy/run.sh
#
# Every knob of the harness (REPEATS, DURATION, TESTS, PROXIES, ...) passes
# through. HARNESS=/path/to/shared/bench/proxy overrides where it is found.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

find_harness() {
	local d="$REPO"
	while [[ "$d" != / ]]; do
		[[ -x "$d/shared/bench/proxy/run.sh" ]] && { echo "$d/shared/bench/proxy"; return; }
		d="$(dirname "$d")"
	done
	return 1
}
HARNESS="${HARNESS:-$(find_harness)}" || { echo "run.sh: shared/bench/proxy not found; set HARNESS" >&2; exit 1; }

BIN_DIR="$(mktemp -d /tmp/cuelet-bench.XXXXXX)"
trap 'rm -rf "$BIN_DIR"' EXIT
(cd "$REPO" && go build -o "$BIN_DIR/candidate" ./bench/proxy/candidate)

export CANDIDATE_ADDR="${CANDIDATE_ADDR:-127.0.0.1:19205}"
export CANDIDATE_NAME="${CANDIDATE_NAME:-cuelet}"
# The candidate command, run by the harness with $CANDIDATE_ADDR and
# $BENCH_BACKENDS set. To measure the agent itself, this is the one line
# to swap (a manifest with fixed endpoints and an external port).
export CANDIDATE_CMD="exec '$BIN_DIR/candidate' -listen \"\$CANDIDATE_ADDR\" -backends \"\$BENCH_BACKENDS\""

"$HARNESS/run.sh"
