#!/usr/bin/env bash
# Runs the cuelet agent on the bundled example manifests, on a fresh Debian 12
# machine, as root: installs podman and what it needs, starts podman's API
# service if none answers, builds the example image from busybox, builds
# cuelet and runs `cuelet run --manifests examples` in the foreground.
# Ctrl-C stops the agent; the pods keep running (`podman pod ls`).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
SOCK=/run/podman/podman.sock
URL="unix://$SOCK"
IMAGE=localhost/cuelet-busybox:latest

if [ "$(id -u)" -ne 0 ]; then
	echo "examples/run.sh: run as root (podman's system service, portals, nftables)" >&2
	exit 1
fi

scripts/deps.sh

# podman's API service: use the one that answers (podman.socket under
# systemd), else start one with the project's containers.conf (runc,
# cgroupfs, file events: what works without systemd as PID 1).
if ! curl -fsS --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
	mkdir -p /run/podman /var/log/cuelet-demo
	echo "starting podman system service on $URL (log: /var/log/cuelet-demo/podman.log)"
	CONTAINERS_CONF="$PWD/podmantest/containers.conf" setsid podman \
		--cgroup-manager cgroupfs --events-backend file \
		system service --time 0 "$URL" >/var/log/cuelet-demo/podman.log 2>&1 &
	for _ in $(seq 50); do
		curl -fsS --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 && break
		sleep 0.2
	done
fi

# No registry is needed: the examples' image is busybox with its applets.
if ! podman --url "$URL" image exists "$IMAGE"; then
	rootfs=$(mktemp -d)
	mkdir -p "$rootfs/bin"
	cp /bin/busybox "$rootfs/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
	done
	tar -C "$rootfs" -cf - . | podman --url "$URL" import --change 'ENV PATH=/bin' - "$IMAGE" >/dev/null
	rm -rf "$rootfs"
	echo "built $IMAGE"
fi

make build
cat <<'TIPS'

cuelet is starting on examples/. In another shell, try:
  bin/cuelet status                                   # pods, services, units
  curl http://127.0.0.1:30080/                        # the web service's external port
  curl http://10.96.0.20/                             # the web service's portal, round robin
  cat /run/cuelet/pods/web/services.env               # the service variables

TIPS
exec bin/cuelet run --manifests examples --podman-url "$URL" --log-format console "$@"
