#!/usr/bin/env bash
# Removes what an interrupted podman e2e or timing run left on this host: its containers
# and networks (through podman, so the plugins' DEL runs), then whatever podman or a plugin
# left behind: container namespaces, veths and bridges of our networks, nftables rules that
# name our subnets or bridges, host-local files, libcni cache entries, host sysctls the
# run changed, directories it created, its state directory under /var/tmp/tscni-e2e.
# Only runs whose process is gone are cleaned; --force cleans running ones too.
# Idempotent; prints what it removed. Also removes the image cache with --purge.
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" -eq 0 ] || { echo "cleanup.sh: run as root" >&2; exit 1; }
args=()
purge=0
for arg in "$@"; do
  case "$arg" in
    --purge) purge=1 ;;
    *) args+=("$arg") ;;
  esac
done
bun cleanup.ts "${args[@]}"
if [ -d /run/tscni-e2e.lock ]; then
  holder=$(cat /run/tscni-e2e.lock/pid 2>/dev/null || echo 0)
  if [ "$holder" -gt 0 ] && ! kill -0 "$holder" 2>/dev/null; then
    rm -rf /run/tscni-e2e.lock
    echo "removed the stale lock of pid $holder"
  fi
fi
if [ "$purge" -eq 1 ]; then
  rm -rf /var/cache/tscni-e2e
  echo "removed /var/cache/tscni-e2e"
fi
