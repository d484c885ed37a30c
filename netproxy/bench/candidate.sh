#!/usr/bin/env bash
# The harness's candidate (run.sh sets CANDIDATE_CMD to this): writes a
# manifest folder with one service whose fixed endpoints are the harness's
# backends ($BENCH_BACKENDS) and whose external port is $CANDIDATE_ADDR,
# and execs the real `cuelet run` on it. Podman is not needed: the podman
# URL points at a socket that does not exist, and fixed-endpoint services
# are served all the same.
#
# From run.sh: CUELET (the binary), CUELET_WORK (a scratch folder),
# CUELET_PORTAL_CIDR, CUELET_PORTAL_LINK, CUELET_NFT_TABLE,
# CUELET_METRICS_ADDRESS, CUELET_PROXY_MODE (default userspace). From the
# harness: BENCH_BACKENDS, CANDIDATE_ADDR.
set -euo pipefail

: "${CUELET:?}" "${CUELET_WORK:?}" "${BENCH_BACKENDS:?}" "${CANDIDATE_ADDR:?}"
: "${CUELET_PORTAL_CIDR:?}" "${CUELET_PORTAL_LINK:?}" "${CUELET_NFT_TABLE:?}" "${CUELET_METRICS_ADDRESS:?}"

manifests="$CUELET_WORK/manifests"
mkdir -p "$manifests"
port="${CANDIDATE_ADDR##*:}"
endpoints="\"${BENCH_BACKENDS//,/\", \"}\""
cat >"$manifests/bench.cue" <<CUE
// One service in front of the benchmark's backends, round robin; its
// external port is the harness's candidate address.
services: bench: {
	endpoints: [$endpoints]
	ports: [{name: "tcp", port: $port, externalPort: $port}]
}
CUE

exec "$CUELET" run \
	--manifests "$manifests" \
	--podman-url "unix://$CUELET_WORK/no-podman.sock" \
	--state-dir "$CUELET_WORK/state" \
	--run-dir "$CUELET_WORK/run" \
	--portal-cidr "$CUELET_PORTAL_CIDR" \
	--portal-link "$CUELET_PORTAL_LINK" \
	--nft-table "$CUELET_NFT_TABLE" \
	--proxy-mode "${CUELET_PROXY_MODE:-userspace}" \
	--external-address "${CANDIDATE_ADDR%:*}" \
	--metrics-address "$CUELET_METRICS_ADDRESS" \
	--resync 10m \
	--log-format json
