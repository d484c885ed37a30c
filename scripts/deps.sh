#!/usr/bin/env bash
# Installs, on Debian 12 as root, what building cuelet, running it and its
# tests need: make, podman with runc (podman would otherwise pull in crun,
# which fails on cgroups v1/hybrid machines), its network stack, nftables and
# iproute2, busybox-static (the test and example image is built from it),
# systemd (systemd-analyze verify) and curl. Go comes with the machine in
# /usr/local/go. Installs only what is missing.
set -euo pipefail

packages=(make podman runc conmon catatonit netavark aardvark-dns containernetworking-plugins
	iptables nftables iproute2 busybox-static systemd curl)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
fi
