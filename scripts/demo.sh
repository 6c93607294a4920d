#!/usr/bin/env bash
# The tscni demo: two pods get their network from the compiled plugins through the `cni`
# runtime CLI (bridge + host-local + portmap + bandwidth + tuning, loopback apart), talk
# to each other, one is reached on a hostPort and shaped, then everything is removed and
# the node is shown to be exactly as it was.
#
# The "node" is a network namespace standing in for a Kubernetes node, so the demo never
# changes this machine's own interfaces, routes, sysctls or firewall.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

BIN="$PWD/dist/bin"
ID="$$"
NODE="tscni-demo-node-$ID"
PODS=("tscni-demo-pod1-$ID" "tscni-demo-pod2-$ID")
WORK=$(mktemp -d /tmp/tscni-demo.XXXXXX)
SERVER_PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
on_node() { ip netns exec "$NODE" "$@"; }
# cni SUBCOMMAND [flags] ARGS…, run on the node with the demo's conf, bin and cache dirs
cni() { local sub=$1; shift; on_node "$BIN/cni" "$sub" --conf-dir "$WORK/net.d" --bin-dir "$BIN" --cache-dir "$WORK/cache" "$@"; }

cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  for pod in "${PODS[@]}"; do ip netns delete "$pod" 2>/dev/null || true; done
  ip netns delete "$NODE" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The network, as a conflist a node would have in /etc/cni/net.d.
mkdir -p "$WORK/net.d"
cat > "$WORK/net.d/10-demo.conflist" <<EOF
{
  "cniVersion": "1.1.0",
  "name": "demo",
  "plugins": [
    { "type": "bridge", "bridge": "cni-demo0", "isGateway": true, "isDefaultGateway": true,
      "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.99.0.0/24" }]], "dataDir": "$WORK/ipam" } },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "bandwidth", "capabilities": { "bandwidth": true } },
    { "type": "tuning", "sysctl": { "net.core.somaxconn": "1024" }, "dataDir": "$WORK/tuning" }
  ]
}
EOF
cat > "$WORK/net.d/05-lo.conf" <<EOF
{ "cniVersion": "1.1.0", "name": "lo", "type": "loopback" }
EOF

node_state() { on_node sh -c 'ip -j link show; ip -j addr show; ip -j route show table all; tc -j qdisc show; nft list ruleset'; }
host_state() { ip -j link show; ip -j addr show; ip -j route show; }
host_before=$(host_state)

say "a node and two pod namespaces"
ip netns add "$NODE"
ip -n "$NODE" link set lo up
for pod in "${PODS[@]}"; do "$BIN/cni" netns create "$pod" >/dev/null; done
"$BIN/cni" netns list | grep tscni-demo
node_before=$(node_state)

say "the network (an embedded conflist)"
cat "$WORK/net.d/10-demo.conflist"

say "cni add: loopback, then the demo network (pod 1 publishes hostPort 8080, shaped to 1 Mbit/s each way)"
for pod in "${PODS[@]}"; do cni add --ifname lo lo "$pod" >/dev/null; done
cni add \
  --cap 'portMappings=[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]' \
  --cap 'bandwidth={"ingressRate":1000000,"ingressBurst":131072,"egressRate":1000000,"egressBurst":131072}' \
  demo "${PODS[0]}"
cni add demo "${PODS[1]}"

say "their addresses, as iproute2 sees them"
for pod in "${PODS[@]}"; do echo "$pod:"; ip -n "$pod" -br addr show; done

say "pod 2 pings pod 1"
ip netns exec "${PODS[1]}" ping -c 2 -W 2 10.99.0.2 | grep -E "bytes from|packet loss"

say "pod 1 serves HTTP on :80; the node fetches it through hostPort 8080"
ip netns exec "${PODS[0]}" bun -e 'const big = "x".repeat(250000); Bun.serve({ port: 80, hostname: "0.0.0.0", fetch: (r) => new Response(new URL(r.url).pathname === "/big" ? big : "hello from pod 1\n") }); console.log("serving")' > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do grep -q serving "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
fetch() { on_node bun -e "console.log('  ' + (await (await fetch('$1', { signal: AbortSignal.timeout(3000) })).text()).trim())"; }
echo "http://127.0.0.1:8080/ →"; fetch http://127.0.0.1:8080/
echo "http://10.99.0.1:8080/ (the node's bridge address) →"; fetch http://10.99.0.1:8080/

say "the shaping: a tbf towards pod 1, and its egress redirected to an ifb with a tbf"
on_node tc qdisc show | grep -E "tbf|ingress"
echo "250 kB from pod 1 through the hostPort:"
on_node bun -e 'const t = performance.now(); const body = await (await fetch("http://10.99.0.1:8080/big")).arrayBuffer(); const s = (performance.now() - t) / 1000; console.log(`  ${body.byteLength} bytes in ${s.toFixed(2)} s = ${(body.byteLength * 8 / s / 1e6).toFixed(2)} Mbit/s`)'


say "tuning: pod 1's net.core.somaxconn"
ip netns exec "${PODS[0]}" cat /proc/sys/net/core/somaxconn

say "cni check"
cni check demo "${PODS[0]}" && echo "pod 1: ok"

say "cni del: everything goes away"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
for pod in "${PODS[@]}"; do
  cni del demo "$pod"
  cni del --ifname lo lo "$pod"
  "$BIN/cni" netns delete "$pod" >/dev/null
done

say "cni gc: what the network's first pod set up for all of them (its tables, now empty) goes"
# DEL removes exactly the pod's own elements and never lists a whole table, so the
# network's shared skeleton stays after its last pod, as the reference plugins' chains do;
# GC (what a CNI 1.1 runtime sends with the attachments it still knows: none here) removes it
on_node nft list tables | grep tscni- || true
cni gc demo
on_node nft list tables | grep tscni- || echo "no tscni table left"

say "is the node as it was?"
if [ "$(node_state)" = "$node_before" ]; then
  echo "yes: links, addresses, routes, qdiscs and nftables rules are exactly as before"
else
  echo "NO: the node changed"; diff <(echo "$node_before") <(node_state) || true; exit 1
fi
ls "$WORK/cache" 2>/dev/null | grep -q . && { echo "NO: cached results left"; exit 1; }
echo "the result cache is empty; no IP is still allocated: $(ls "$WORK/ipam/demo" 2>/dev/null | grep -cE '^[0-9]') allocations"
ip netns delete "$NODE"
if [ "$(host_state)" = "$host_before" ]; then echo "and this machine's own network was never touched"; else echo "NO: this machine changed"; diff <(echo "$host_before") <(host_state) | head -20; exit 1; fi
