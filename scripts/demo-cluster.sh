#!/usr/bin/env bash
# The cluster demo: three nodes, etcd, a `tscni agent` per node; each node leases a pod
# subnet and builds the VXLAN overlay to the others; a pod on every node (made by the
# tscni-net meta plugin through the `cni` CLI, the calls served by the node's agent)
# reaches the pods on the other nodes without NAT; a default-deny NetworkPolicy isolates
# them and an allow policy lets one through (`cni policy apply`, `cni policy explain`);
# then node 3 leaves and disappears from the others; everything is removed.
#
# Background processes are started with `ip netns exec` directly (never through a shell
# function, whose subshell's PID is not theirs), so cleanup ends exactly them, by PID.
#
# The nodes, the underlay they share and etcd are network namespaces this script makes and
# removes: this machine's own interfaces, routes and services are never touched, and no
# packet leaves those namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

BIN="$PWD/dist/bin"
ID="$$"
WORK=$(mktemp -d /tmp/tscni-demo-cluster.XXXXXX)
UNDERLAY="tscni-democ-u-$ID"
ETCD_NS="tscni-democ-etcd-$ID"
NODES=("tscni-democ-n1-$ID" "tscni-democ-n2-$ID" "tscni-democ-n3-$ID")
PODS=("tscni-democ-p1-$ID" "tscni-democ-p2-$ID" "tscni-democ-p3-$ID")
SEGMENT="10.213.0"
ETCD="http://$SEGMENT.1:2379"
PREFIX="/tscni-demo/network"
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
node_name() { echo "node$(( $1 + 1 ))"; }
on() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
etcdctl_() { on "$ETCD_NS" env ETCDCTL_API=3 etcdctl --endpoints="$ETCD" "$@"; }
# cni SUBCOMMAND ARGS… on node $1, with that node's conflist and cache dir; the plugins are
# links to the multicall tscni (as tscni-install lays them out), so they hand their calls
# to the node's agent
cni_on() { local i=$1 sub=$2; shift 2; on "${NODES[$i]}" env TSCNI_DAEMON_SOCKET="$WORK/n$i/agent.sock" "$BIN/cni" "$sub" --conf-dir "$WORK/n$i/net.d" --bin-dir "$WORK/bin" --cache-dir "$WORK/n$i/cache" "$@"; }
# from node1, which reaches etcd over the underlay (this machine itself does not)
policy() { on "${NODES[0]}" "$BIN/cni" policy "$@" --etcd-endpoints "$ETCD" --etcd-prefix "$PREFIX"; }
# waits until the agents of the nodes given enforce everything etcd holds now (their applied revision)
enforced() {
  local revision i applied
  revision=$(etcdctl_ get -w json "$PREFIX/config" | sed 's/.*"revision":\([0-9]*\).*/\1/')
  for i in "$@"; do
    for _ in $(seq 1 100); do
      applied=$(on "${NODES[$i]}" curl -s http://127.0.0.1:9402/metrics | sed -n 's/^tscni_policy_applied_revision //p')
      [ "${applied:-0}" -ge "$revision" ] && break
      sleep 0.1
    done
  done
}

cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${PODS[@]}" "${NODES[@]}" "$ETCD_NS" "$UNDERLAY"; do ip netns delete "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

host_state() { ip -j link show; ip -j addr show; ip -j route show; }
host_before=$(host_state)

say "an underlay bridge, etcd and three nodes, each a network namespace"
ip netns add "$UNDERLAY"
ip -n "$UNDERLAY" link add br0 type bridge
ip -n "$UNDERLAY" link set br0 up
plug() { # namespace, address: a veth from the underlay bridge, eth0 in the namespace
  local ns=$1 address=$2
  local port="p${address##*.}"
  ip -n "$UNDERLAY" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$UNDERLAY" link set "$port" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$address/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$SEGMENT.254" dev eth0 onlink
}
ip netns add "$ETCD_NS"
plug "$ETCD_NS" "$SEGMENT.1"
for i in 0 1 2; do
  ip netns add "${NODES[$i]}"
  plug "${NODES[$i]}" "$SEGMENT.1$(( i + 1 ))"
done
echo "underlay $SEGMENT.0/24: etcd $SEGMENT.1, nodes $SEGMENT.11-13"

say "etcd (Debian's etcd-server) and the cluster config"
ip netns exec "$ETCD_NS" etcd --name demo --data-dir "$WORK/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster demo=http://127.0.0.1:2380 --logger zap --log-outputs stderr 2> "$WORK/etcd.log" &
PIDS+=($!)
for _ in $(seq 1 100); do etcdctl_ endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
etcdctl_ put "$PREFIX/config" '{"network": "10.244.0.0/16", "subnetLen": 24, "backend": {"type": "vxlan"}}' >/dev/null
etcdctl_ get "$PREFIX/config" --print-value-only

say "tscni agent on every node: it leases a subnet and writes the node file"
for i in 0 1 2; do
  mkdir -p "$WORK/n$i/net.d"
  ip netns exec "${NODES[$i]}" "$BIN/tscni" agent --etcd-endpoints "$ETCD" --etcd-prefix "$PREFIX" --node "$(node_name "$i")" \
    --node-file "$WORK/n$i/node.json" --socket "$WORK/n$i/agent.sock" --health-listen 127.0.0.1:9402 --resync-interval 2 \
    2> "$WORK/n$i/agent.log" &
  PIDS+=($!)
done
AGENTS=("${PIDS[1]}" "${PIDS[2]}" "${PIDS[3]}")
for i in 0 1 2; do
  for _ in $(seq 1 100); do [ -s "$WORK/n$i/node.json" ] && break; sleep 0.1; done
  echo "$(node_name "$i"): $(cat "$WORK/n$i/node.json")"
done
echo "the leases in etcd:"
etcdctl_ get --prefix "$PREFIX/subnets/" | paste - -

say "each node's conflist: the tscni-net meta plugin reads the node file"
for i in 0 1 2; do
  cat > "$WORK/n$i/net.d/10-cluster.conflist" <<EOF
{
  "cniVersion": "1.1.0",
  "name": "cluster",
  "plugins": [
    { "type": "tscni-net", "nodeFile": "$WORK/n$i/node.json", "dataDir": "$WORK/n$i/delegates",
      "delegate": { "bridge": "cni0", "ipam": { "dataDir": "$WORK/n$i/ipam" } } }
  ]
}
EOF
done
cat "$WORK/n0/net.d/10-cluster.conflist"

say "a pod on every node (cni add, naming the pod in CNI_ARGS as containerd does), its labels in etcd"
mkdir -p "$WORK/bin"
for plugin in tscni-net bridge host-local loopback portmap bandwidth; do ln -s "$BIN/tscni" "$WORK/bin/$plugin"; done
ROLES=(client web other)
{
  echo '{"kind": "Namespace", "metadata": {"name": "demo", "labels": {"team": "demo"}}}'
  for i in 0 1 2; do echo "---"; echo "{\"kind\": \"Pod\", \"metadata\": {\"name\": \"pod$(( i + 1 ))\", \"namespace\": \"demo\", \"labels\": {\"role\": \"${ROLES[$i]}\"}}}"; done
} > "$WORK/pods.yaml"
policy apply -f "$WORK/pods.yaml"
POD_IPS=()
for i in 0 1 2; do
  "$BIN/cni" netns create "${PODS[$i]}" >/dev/null
  cni_on "$i" add cluster "${PODS[$i]}" --args "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod$(( i + 1 ))" >/dev/null
  POD_IPS+=("$(ip -n "${PODS[$i]}" -j addr show eth0 | sed -n 's/.*"local":"\(10\.244\.[0-9.]*\)".*/\1/p')")
  echo "$(node_name "$i"): pod ${POD_IPS[$i]}"
done

say "node1's overlay: its VXLAN device, and per peer a forwarding entry, a neighbour and a route"
for _ in $(seq 1 50); do [ "$(ip -n "${NODES[0]}" route show proto 116 | wc -l)" -eq 2 ] && break; sleep 0.1; done
ip -n "${NODES[0]}" -d link show tscni.1 | sed -n '1,3p'
bridge -n "${NODES[0]}" fdb show dev tscni.1 | grep dst
ip -n "${NODES[0]}" neigh show dev tscni.1
ip -n "${NODES[0]}" route show proto 116

say "every pod pings every pod on the other nodes"
for i in 0 1 2; do
  for j in 0 1 2; do
    [ "$i" = "$j" ] && continue
    on "${PODS[$i]}" ping -c 1 -W 5 "${POD_IPS[$j]}" > /dev/null
    echo "$(node_name "$i") pod ${POD_IPS[$i]} → $(node_name "$j") pod ${POD_IPS[$j]}: ok"
  done
done

say "NetworkPolicy: default deny in namespace demo (cni policy apply)"
cat > "$WORK/deny.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: demo}
spec:
  podSelector: {}
EOF
cat "$WORK/deny.yaml"
policy apply -f "$WORK/deny.yaml"
enforced 0 1 2
if on "${PODS[0]}" ping -c 1 -W 2 "${POD_IPS[1]}" > /dev/null 2>&1; then echo "pod1 → pod2 passed a default deny" >&2; exit 1; fi
echo "pod1 (client) → pod2 (web): refused"
policy explain demo/pod1 demo/pod2 icmp

say "an allow policy: web pods admit client pods"
cat > "$WORK/allow.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: demo}
spec:
  podSelector: {matchLabels: {role: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
EOF
cat "$WORK/allow.yaml"
policy apply -f "$WORK/allow.yaml"
enforced 0 1 2
on "${PODS[0]}" ping -c 1 -W 5 "${POD_IPS[1]}" > /dev/null && echo "pod1 (client) → pod2 (web): ok"
if on "${PODS[2]}" ping -c 1 -W 2 "${POD_IPS[1]}" > /dev/null 2>&1; then echo "pod3 → pod2 passed" >&2; exit 1; fi
echo "pod3 (other) → pod2 (web): refused"
policy explain demo/pod1 demo/pod2 80/tcp
policy list -n demo
echo "node2's dispatch of its pod, in its own nftables table:"
ip netns exec "${NODES[1]}" nft list map inet tscni-policy ingress4 | grep elements
policy delete -f "$WORK/deny.yaml"
policy delete -f "$WORK/allow.yaml"
enforced 0 1 2
on "${PODS[2]}" ping -c 1 -W 5 "${POD_IPS[1]}" > /dev/null && echo "policies deleted: pod3 → pod2 ok again"

say "node3 leaves: its agent stops, 'tscni agent leave' releases its lease"
kill -TERM "${AGENTS[2]}"
wait "${AGENTS[2]}" 2>/dev/null || true
on "${NODES[2]}" "$BIN/tscni" agent leave --etcd-endpoints "$ETCD" --etcd-prefix "$PREFIX" --node node3
for _ in $(seq 1 50); do [ "$(ip -n "${NODES[0]}" route show proto 116 | wc -l)" -eq 1 ] && break; sleep 0.1; done
echo "node1's routes to its peers now:"
ip -n "${NODES[0]}" route show proto 116
on "${PODS[0]}" ping -c 1 -W 5 "${POD_IPS[1]}" > /dev/null && echo "node1 pod → node2 pod: still ok"

say "cni del of every pod, the agents stop, etcd stops, the namespaces go"
for i in 0 1 2; do cni_on "$i" del cluster "${PODS[$i]}"; done
echo "node1's pods' bridge after the last DEL: $(ip -n "${NODES[0]}" link show cni0 2>/dev/null | wc -l) link(s)"
cleanup
trap - EXIT INT TERM

say "is this machine as it was?"
if [ "$(host_state)" = "$host_before" ]; then
  echo "yes: the same links, addresses and routes as before the demo"
else
  echo "no: this machine's network changed" >&2
  exit 1
fi
