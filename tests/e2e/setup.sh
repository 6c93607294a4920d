#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) for the podman e2e tests and podman-timing.ts:
#   - Debian packages: podman (CNI backend), runc, busybox-static, containernetworking-plugins
#     (the reference plugins, for the timing comparison), nftables, iproute2, util-linux
#   - the image: a root filesystem made of Debian's static busybox, as a tar for
#     `podman import` (each run imports it into its own private store; no registry)
#   - dist/bin, if a plugin of podman's chain is missing there
#   - a smoke test: podman with the e2e's private configuration runs the image (no network)
# Safe to run again: it skips what is already there. Changes nothing podman-global: the
# configuration is written per run by tests/e2e/podman.ts.
set -euo pipefail
cd "$(dirname "$0")/../.."

APT_PACKAGES=(podman runc conmon busybox-static containernetworking-plugins
  nftables iproute2 util-linux)
CACHE=/var/cache/tscni-e2e
TAR=$CACHE/busybox-rootfs.tar

[ "$(id -u)" -eq 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }

source scripts/apt-missing.sh
# no recommends: buildah, fuse-overlayfs, slirp4netns, dbus-user-session are for rootless use
apt_install_missing --no-install-recommends -- "${APT_PACKAGES[@]}"
for pkg in podman runc conmon busybox-static containernetworking-plugins golang-github-containers-common; do
  printf '   %-36s %s\n' "$pkg" "$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo missing)"
done

if ! command -v bun >/dev/null; then
  echo "setup.sh: bun is missing: run scripts/setup.sh first" >&2
  exit 1
fi
for plugin in bridge host-local portmap firewall tuning; do
  if [ ! -x "dist/bin/$plugin" ]; then
    echo "== dist/bin/$plugin is missing: bun run build"
    bun run build >/dev/null || echo "   (full build failed; the e2e drops missing plugins from podman's chain and says so)"
    break
  fi
done

# The image: busybox and one symlink per applet, /www for httpd, passwd/group for podman.
stamp="$(dpkg-query -W -f='${Version}' busybox-static)"
if [ ! -s "$TAR" ] || [ "$(cat "$CACHE/busybox-version" 2>/dev/null)" != "$stamp" ]; then
  echo "== building $TAR from busybox-static $stamp"
  mkdir -p "$CACHE"
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs"/{bin,etc,www,tmp,proc,sys,dev,root}
  chmod 1777 "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
  echo 'root:x:0:' > "$rootfs/etc/group"
  echo 'tscni-e2e httpd' > "$rootfs/www/index.html"
  tar -C "$rootfs" --numeric-owner --owner=0 --group=0 --sort=name --mtime='2020-01-01' -cf "$TAR.tmp" .
  mv "$TAR.tmp" "$TAR"
  echo "$stamp" > "$CACHE/busybox-version"
fi

echo "== smoke test: podman (private config, runc) runs the image without a network"
bun -e '
  import { createPodman, OUR_PLUGINS, IMAGE, acquireLock } from "./tests/e2e/podman.ts"
  import { cleanupOwnRuns } from "./tests/e2e/cleanup.ts"
  const release = await acquireLock()
  try {
    const podman = createPodman([{ name: "ours", pluginDir: OUR_PLUGINS }])
    const out = podman.ok(podman.state.confs[0], ["run", "--rm", "--network", "none", IMAGE, "sh", "-c", "echo ok; ulimit -n; ulimit -u"])
    console.log("   container says: " + out.trim().split("\n").join(", "))
  } finally {
    cleanupOwnRuns()
    release()
  }
'
echo "== ready: TSCNI_E2E=1 bun test tests/e2e ; bun tests/e2e/podman-timing.ts"
