/**
 * The cluster network's bench (issue #12): `bun tests/bench/cluster.ts` (root; ~4 min).
 * Writes docs/bench/cluster.{md,json}.
 *
 * For host-gw and for VXLAN, each on a 3-node test cluster of namespaces (one underlay
 * bridge, etcd from Debian, the compiled agents, pods made by tscni-net — the same
 * topology as tests/integration/cluster-*.test.ts):
 *   - TCP throughput (iperf3, 5 s, 3 runs, median) and latency (60 pings 20 ms apart,
 *     median RTT) of pod → pod across nodes, against the same pair on one node and the
 *     underlay itself (node → node);
 *   - the time from a node's agent starting until another node routes to its subnet
 *     (5 joins, median);
 *   - node 1's agent idle: CPU over 20 s and RSS, with its 2 real peers and with 50 peers
 *     (48 simulated: leases written to etcd for addresses on the underlay, so node 1
 *     programs a route — host-gw — or forwarding entry, neighbour and route — VXLAN — each).
 * Everything runs in namespaces the bench makes and removes; traffic stays among them.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { cpuMs, type Endpoint, median, round, rssMb, throughput } from "./netns-measure.ts"
import { agentRoutes, makeCluster, makePod, type RunningAgent, type TestCluster, type TestNode, type TestPod, until } from "../integration/cluster.ts"

const OUT_DIR = resolve(import.meta.dir, "..", "..", "docs", "bench")
const log = (line: string) => process.stderr.write(`[cluster bench] ${line}\n`)
/** Median RTT (ms) of 60 pings 20 ms apart. */
const latency = (from: Endpoint, to: Endpoint): number => {
  const run = Bun.spawnSync(["ip", "netns", "exec", from.netns, "ping", "-c", "60", "-i", "0.02", "-W", "2", to.ip])
  const times = [...run.stdout.toString().matchAll(/time=([\d.]+) ms/g)].map((match) => Number(match[1]))
  if (times.length < 55) throw new Error(`ping ${from.ip} → ${to.ip}: ${times.length} of 60 answered`)
  return median(times)
}

interface PairResult {
  readonly pair: string
  readonly gbits: number
  readonly rttMs: number
}

const measurePair = async (pair: string, from: Endpoint, to: Endpoint): Promise<PairResult> => {
  const runs: Array<number> = []
  for (let i = 0; i < 3; i++) runs.push(await throughput(from, to))
  const result = { pair, gbits: round(median(runs), 2), rttMs: round(latency(from, to), 3) }
  log(`${pair}: ${result.gbits} Gbit/s, ${result.rttMs} ms`)
  return result
}

const idle = async (pid: number, seconds: number) => {
  const before = cpuMs(pid)
  await Bun.sleep(seconds * 1000)
  return { cpuPercent: round(((cpuMs(pid) - before) / (seconds * 1000)) * 100, 2), rssMb: round(rssMb(pid)) }
}

interface BackendResult {
  readonly backend: string
  readonly pairs: ReadonlyArray<PairResult>
  readonly joinMs: ReadonlyArray<number>
  readonly joinMedianMs: number
  readonly idle3: { readonly cpuPercent: number; readonly rssMb: number }
  readonly idle50: { readonly cpuPercent: number; readonly rssMb: number; readonly objects: number }
}

const runBackend = async (backend: "host-gw" | "vxlan", dir: string): Promise<BackendResult> => {
  log(`${backend}: a 4-node test cluster`)
  const cluster: TestCluster = await makeCluster(4)
  const agents = new Map<string, RunningAgent>()
  const start = (node: TestNode) => agents.set(node.name, cluster.startAgent(node, ["--lease-ttl", "60", "--resync-interval", "10"]))
  try {
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: backend } }))
    const [n1, n2, n3, n4] = cluster.nodes as [TestNode, TestNode, TestNode, TestNode]
    for (const node of [n1, n2, n3]) start(node)
    for (const node of [n1, n2, n3]) await until(`${node.name} ready`, () => (cluster.probe(node, "/readyz").status === 200 ? true : undefined))
    await until("node1 to route its peers", () => (agentRoutes(n1).length === 2 ? true : undefined))
    const [a, b, c]: Array<TestPod> = [makePod(n1, dir), makePod(n2, dir), makePod(n1, dir)]
    const pairs = [
      await measurePair("pod → pod, across nodes", a, b),
      await measurePair("pod → pod, one node", a, c),
      await measurePair("node → node (the underlay)", { netns: n1.netns, ip: n1.address }, { netns: n2.netns, ip: n2.address })
    ]
    const joinMs: Array<number> = []
    for (let i = 0; i < 5; i++) {
      const started = performance.now()
      start(n4)
      await until("node1 to route node4", () => (agentRoutes(n1).length === 3 ? true : undefined))
      joinMs.push(round(performance.now() - started, 0))
      const agent = agents.get(n4.name)!
      process.kill(agent.pid, "SIGTERM")
      await agent.exited
      agents.delete(n4.name)
      cluster.agentCommand(n4, ["leave", "--etcd-endpoints", cluster.etcd.endpoint, "--etcd-prefix", cluster.prefix, "--node", n4.name])
      await until("node1 to drop node4", () => (agentRoutes(n1).length === 2 ? true : undefined))
    }
    log(`${backend}: join → routed ${joinMs.join(", ")} ms`)
    const agentPid = agents.get(n1.name)!.pid
    const idle3 = await idle(agentPid, 20)
    log(`${backend}: node1's agent idle with 2 peers: ${idle3.cpuPercent} % CPU, ${idle3.rssMb} MB`)
    // 48 more peers: leases for addresses on the underlay that no node holds
    const segment = n1.address.split(".").slice(0, 3).join(".")
    for (let i = 0; i < 48; i++) {
      const record = { node: `sim${i}`, publicIp: `${segment}.${100 + i}`, backend: { type: backend === "host-gw" ? "host-gw" : "vxlan", vtepMac: `0a:58:00:00:00:${(i + 16).toString(16).padStart(2, "0")}` } }
      cluster.etcd.etcdctl("put", `${cluster.prefix}/subnets/10.244.${100 + i}.0-24`, JSON.stringify(record))
    }
    await until("node1 to route 50 peers", () => (agentRoutes(n1).length === 50 ? true : undefined), 60_000)
    const idle50 = { ...(await idle(agentPid, 20)), objects: backend === "host-gw" ? 50 : 150 }
    log(`${backend}: node1's agent idle with 50 peers: ${idle50.cpuPercent} % CPU, ${idle50.rssMb} MB`)
    return { backend, pairs, joinMs, joinMedianMs: median(joinMs), idle3, idle50 }
  } finally {
    await cluster.remove()
  }
}

const main = async () => {
  if (process.getuid?.() !== 0) throw new Error("the cluster bench needs root (it makes network namespaces)")
  const dir = mkdtempSync(join(tmpdir(), "tscni-cluster-bench-"))
  const began = Date.now()
  try {
    const results = [await runBackend("host-gw", dir), await runBackend("vxlan", dir)]
    const machine = `${navigator.hardwareConcurrency} CPUs, Linux ${readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()}, Bun ${Bun.version}, ${Bun.spawnSync(["iperf3", "--version"]).stdout.toString().split("\n")[0]}`
    const lines = [
      "# The cluster network: pod to pod across nodes",
      "",
      `Written by \`bun tests/bench/cluster.ts\` on ${new Date().toISOString()} (${round((Date.now() - began) / 60000)} min): ${machine}.`,
      "Each backend on a test cluster of namespaces: nodes on one veth underlay bridge, etcd from Debian, the compiled `tscni agent` per node, pods made by tscni-net (bridge + host-local, the node file's MTU: 1500 for host-gw, 1450 for VXLAN). Throughput: iperf3 TCP, 5 s, median of 3; latency: median RTT of 60 pings 20 ms apart. veth and bridge run in the CPU, so these compare the paths' costs on one machine, not a network.",
      "",
      "## Throughput and latency",
      "",
      "| backend | path | Gbit/s | ÷ underlay | RTT ms | ÷ underlay |",
      "|---|---|---|---|---|---|",
      ...results.flatMap((result) => {
        const underlay = result.pairs[2]!
        return result.pairs.map((pair) => `| ${result.backend} | ${pair.pair} | ${pair.gbits} | ${round(pair.gbits / underlay.gbits, 2)}× | ${pair.rttMs} | ${round(pair.rttMs / underlay.rttMs, 2)}× |`)
      }),
      "",
      "## A node joining, and the agent at rest",
      "",
      "| backend | agent start → another node routes to it (median of 5; each) | node1's agent idle with 2 peers: CPU, RSS | with 50 peers: CPU, RSS (kernel objects) |",
      "|---|---|---|---|",
      ...results.map((result) =>
        `| ${result.backend} | ${result.joinMedianMs} ms (${result.joinMs.join(", ")}) | ${result.idle3.cpuPercent} %, ${result.idle3.rssMb} MB | ${result.idle50.cpuPercent} %, ${result.idle50.rssMb} MB (${result.idle50.objects}) |`),
      "",
      "Idle CPU is utime + stime over 20 s of `/proc/<pid>/stat` (10 ms ticks), with `--resync-interval 10`: a resync every 10 s lists the routes (and, for VXLAN, the device's neighbours and forwarding entries) and changes nothing. The 48 simulated peers are leases written to etcd for underlay addresses no node holds; node 1 programs them like real ones.",
      ""
    ]
    writeFileSync(join(OUT_DIR, "cluster.md"), lines.join("\n"))
    writeFileSync(join(OUT_DIR, "cluster.json"), JSON.stringify({ machine, results }, null, 2) + "\n")
    log(`done: ${join(OUT_DIR, "cluster.md")}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
