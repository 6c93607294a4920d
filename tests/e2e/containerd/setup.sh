#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) for the containerd e2e: Debian's containerd (1.6),
# runc and busybox-static (the sandbox image is built from it by image.ts), nsenter, and
# dist/bin. Starts nothing: each test run starts its own containerd (harness.ts).
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ "$(id -u)" -eq 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }
source scripts/apt-missing.sh
apt_install_missing --no-install-recommends -- containerd runc busybox-static util-linux iproute2 curl
for pkg in containerd runc busybox-static; do
  printf '   %-16s %s\n' "$pkg" "$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo missing)"
done
[ -x dist/bin/tscni-install ] || bash scripts/setup.sh
