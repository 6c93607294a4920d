#!/usr/bin/env bash
# Makes a fresh Debian machine that has only node/npm ready to build and test tscni:
# Bun from the npm registry, iproute2 from Debian, dependencies from bun.lock, then the
# compiled plugins in dist/bin. Safe to run again: it skips what is already there.
set -euo pipefail
# turbo prints a telemetry notice otherwise, in the middle of the demo's output
export TURBO_TELEMETRY_DISABLED=1
cd "$(dirname "$0")/.."

BUN_VERSION=1.4.5
APT_PACKAGES=(iproute2 iputils-ping nftables libnftables1 iptables conntrack curl containernetworking-plugins etcd-server etcd-client util-linux-extra)

if [ "$(bun --version 2>/dev/null || true)" != "$BUN_VERSION" ]; then
  echo "== installing bun $BUN_VERSION from the npm registry"
  npm install --global --no-fund --no-audit --allow-scripts=bun "bun@$BUN_VERSION" >/dev/null 2>&1 \
    || npm install --global --no-fund --no-audit "bun@$BUN_VERSION" >/dev/null
fi

source scripts/apt-missing.sh
apt_install_missing -- "${APT_PACKAGES[@]}"

echo "== bun install"
bun install --frozen-lockfile >/dev/null
echo "== build (dist/bin)"
bun run build >/dev/null
