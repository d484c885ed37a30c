#!/usr/bin/env bash
# Runs the shared L4 proxy benchmark harness (shared/bench/proxy, see its
# README.md) with the real `cuelet run` as the candidate, next to haproxy,
# nginx and socat: one service with fixed endpoints on the harness's three
# backends, its external port on 127.0.0.1 (candidate.sh). The report goes
# to stdout, progress to stderr. Needs root (cuelet programs its portal).
#
# The harness takes one candidate a run, so each proxy mode gets a run of
# its own (MODES, default "userspace nftables"; column cuelet-<mode>), each
# with its own direct baseline; the reference proxies run in the first
# only. Compare each mode's ratios to direct, not raw numbers across runs.
#
#   netproxy/bench/run.sh                     # about 6 minutes
#   MODES=nftables PROXIES= netproxy/bench/run.sh
#   REPEATS=1 DURATION=3s netproxy/bench/run.sh
#
# Every knob of the harness (REPEATS, DURATION, TESTS, PROXIES, ...) passes
# through. HARNESS=/path/to/shared/bench/proxy overrides where it is found;
# CUELET=/path/to/cuelet skips `make build`.
set -euo pipefail
# A fresh Debian machine has Go in /usr/local/go but not on PATH.
export PATH="$PATH:/usr/local/go/bin"

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
[[ "$(id -u)" == 0 ]] || { echo "run.sh: cuelet run needs root for its portal link and nftables table" >&2; exit 1; }

if [[ -z "${CUELET:-}" ]]; then
	make -C "$REPO" build >&2
	CUELET="$REPO/bin/cuelet"
fi

# The agent's portal range, link and table: its own, so that an agent on
# this host (10.96.0.0/16, cuelet0, cuelet) and the tests
# (10.237.x.0/24, clsvc<N>) are not touched.
export CUELET_PORTAL_CIDR="${CUELET_PORTAL_CIDR:-10.238.255.0/24}"
export CUELET_PORTAL_LINK="${CUELET_PORTAL_LINK:-clbench0}"
export CUELET_NFT_TABLE="${CUELET_NFT_TABLE:-cuelet_bench}"
export CUELET_METRICS_ADDRESS="${CUELET_METRICS_ADDRESS:-127.0.0.1:19299}"
if ip -4 route show table all | grep -v " dev $CUELET_PORTAL_LINK " | grep -q "${CUELET_PORTAL_CIDR%.*}\."; then
	echo "run.sh: something on this host routes $CUELET_PORTAL_CIDR; set CUELET_PORTAL_CIDR" >&2
	exit 1
fi

CUELET_WORK=""
cleanup() {
	# The agent leaves its portals in place when it stops (so a restart
	# keeps serving; in nftables mode they keep forwarding): the benchmark
	# removes them, before the next mode's run too, whose candidate would
	# otherwise lose its port to the last run's DNAT rule.
	ip link del "$CUELET_PORTAL_LINK" 2>/dev/null || true
	nft delete table ip "$CUELET_NFT_TABLE" 2>/dev/null || true
	[[ -z "$CUELET_WORK" ]] || rm -rf "$CUELET_WORK"
}
trap cleanup EXIT

export CANDIDATE_ADDR="${CANDIDATE_ADDR:-127.0.0.1:19205}"
export CANDIDATE_CMD="exec '$HERE/candidate.sh'"
MODES="${MODES:-userspace nftables}"
first=1
for mode in $MODES; do
	cleanup
	CUELET_WORK="$(mktemp -d /tmp/cuelet-bench.XXXXXX)"
	export CUELET CUELET_WORK
	export CUELET_PROXY_MODE="$mode"
	export CANDIDATE_NAME="cuelet-$mode"
	echo "run.sh: --proxy-mode $mode" >&2
	if [[ $first == 1 ]]; then
		"$HARNESS/run.sh"
	else
		PROXIES="" "$HARNESS/run.sh"
	fi
	first=0
done
