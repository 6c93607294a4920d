#!/usr/bin/env bash
# The demo: a pod network namespace gets its loopback from the compiled tscni plugin,
# we look at it with iproute2, then remove it and show the host is as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

NS="tscni-demo-$$"
cleanup() { ip netns delete "$NS" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

run_plugin() { # COMMAND CONFIG
  env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="demo-$$" CNI_NETNS="/var/run/netns/$NS" \
    CNI_IFNAME=lo CNI_PATH="$PWD/dist/bin" dist/bin/loopback <<<"$2"
}

CONF='{"cniVersion":"1.1.0","name":"demo","type":"loopback"}'
echo "== VERSION"
CNI_COMMAND=VERSION dist/bin/loopback </dev/null
host_state() { ip netns list; ip -j link show; ip -j addr show; ip -j route show; }
before=$(host_state)
echo "== create pod namespace $NS"
ip netns add "$NS"
ip -n "$NS" -br link show lo
echo "== loopback ADD"
result=$(run_plugin ADD "$CONF")
echo "$result"
ip -n "$NS" -br addr show lo
ip netns exec "$NS" ping -c 1 -W 1 127.0.0.1 | grep -E "bytes from|packet loss"
echo "== loopback CHECK"
run_plugin CHECK "{\"cniVersion\":\"1.1.0\",\"name\":\"demo\",\"type\":\"loopback\",\"prevResult\":$result}" && echo "CHECK ok"
echo "== loopback DEL"
run_plugin DEL "{\"cniVersion\":\"1.1.0\",\"name\":\"demo\",\"type\":\"loopback\",\"prevResult\":$result}" && echo "DEL ok"
ip -n "$NS" -br link show lo
ip netns delete "$NS"
trap - EXIT INT TERM
if [ "$(host_state)" = "$before" ]; then echo "== host is as it was (namespaces, links, addresses, routes)"; else echo "!! the host changed"; exit 1; fi
