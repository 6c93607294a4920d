/**
 * host-gw across a 3-node test cluster (namespaces on one underlay bridge, etcd on it, the
 * compiled `tscni agent` in each node): every node routes every peer's subnet via the
 * peer, with tscni's route protocol, and nothing else of its routes changes; pods made by
 * the compiled bridge plugin on each node's subnet reach each other across nodes, and the
 * receiver sees the sender's pod IP (no NAT); a route deleted by hand comes back at the next
 * resync; a node that leaves is removed everywhere. Observed with `ip -j route` and traffic.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { binary, execPlugin, freshNetns, ip, podEnv } from "./harness.ts"
import { makeCluster, type RunningAgent, type TestCluster, type TestNode, until } from "./cluster.ts"

const TSCNI_PROTOCOL = "116"
let cluster: TestCluster
let dir: string
const agents = new Map<string, RunningAgent>()

interface Pod {
  readonly node: TestNode
  readonly netns: string
  readonly ip: string
}
const pods: Array<Pod> = []

const subnetOf = (node: TestNode): string => (JSON.parse(readFileSync(node.nodeFile, "utf8")) as { subnets: Array<string> }).subnets[0]!

/** The node's routes of tscni's protocol, as `dst via gateway`. */
const agentRoutes = (node: TestNode): Array<string> =>
  (JSON.parse(ip("-j", "-n", node.netns, "route", "show", "proto", TSCNI_PROTOCOL)) as Array<{ dst: string; gateway?: string }>)
    .map((route) => `${route.dst} via ${route.gateway ?? "-"}`)
    .sort()

const expectedRoutes = (node: TestNode): Array<string> =>
  cluster.nodes.filter((peer) => peer !== node && agents.has(peer.name)).map((peer) => `${subnetOf(peer)} via ${peer.address}`).sort()

/** Waits until every running node routes exactly its running peers. */
const converged = () =>
  until("every node to route its peers", () =>
    cluster.nodes.every((node) => !agents.has(node.name) || agentRoutes(node).join() === expectedRoutes(node).join()) ? true : undefined)

/** A pod on `node`: the compiled bridge plugin, host-local on the node's subnet, no masquerade. */
const makePod = (node: TestNode, index: number): Pod => {
  const netns = freshNetns()
  const conf = {
    cniVersion: "1.0.0",
    name: "cluster",
    type: "bridge",
    bridge: "cni0",
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: false,
    ipam: { type: "host-local", ranges: [[{ subnet: subnetOf(node) }]], dataDir: join(dir, node.name) }
  }
  const run = execPlugin(["ip", "netns", "exec", node.netns, binary("bridge")], podEnv("ADD", `pod-${index}`, netns.path), JSON.stringify(conf))
  if (run.exitCode !== 0) throw new Error(`bridge ADD on ${node.name}: ${run.stdout}${run.stderr}`)
  const address = ((run.json!.ips as Array<{ address: string }>)[0]!.address).split("/")[0]!
  return { node, netns: netns.name, ip: address }
}

/** The source address a TCP server in `to` sees for a connection from `from`. */
const sourceSeen = async (from: Pod, to: Pod): Promise<string> => {
  const server = Bun.spawn(["ip", "netns", "exec", to.netns, process.execPath, "-e", `
    const server = Bun.listen({ hostname: "0.0.0.0", port: 7070, socket: { open(s) { s.write(s.remoteAddress + "\\n"); s.end() }, data() {} } })
    console.log("listening")`], { stdout: "pipe", stderr: "ignore" })
  try {
    const reader = server.stdout.getReader()
    const first = await reader.read()
    if (!new TextDecoder().decode(first.value).includes("listening")) throw new Error("the server did not start")
    const client = Bun.spawnSync(["ip", "netns", "exec", from.netns, process.execPath, "-e", `
      const socket = await Bun.connect({ hostname: "${to.ip}", port: 7070, socket: { data(s, d) { process.stdout.write(new TextDecoder().decode(d)) }, close() { process.exit(0) }, error() { process.exit(1) } } })`], {
      timeout: 10_000
    })
    return client.stdout.toString().trim()
  } finally {
    server.kill("SIGKILL")
    await server.exited
  }
}

const start = (node: TestNode) => {
  agents.set(node.name, cluster.startAgent(node, ["--lease-ttl", "30", "--resync-interval", "1"]))
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tscni-hostgw-"))
  cluster = await makeCluster(3)
  cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "host-gw" } }))
})

afterAll(async () => {
  await cluster?.remove()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

describe("host-gw across three nodes", () => {
  test("each node routes every peer's subnet via the peer, with tscni's protocol; a stale route of tscni's goes, anyone else's stays", async () => {
    const [n1, n2] = cluster.nodes as [TestNode, TestNode]
    // before the agents: a route of tscni's to a node that no longer exists, and a foreign one
    ip("-n", n1.netns, "route", "add", "10.244.99.0/24", "via", n2.address, "proto", TSCNI_PROTOCOL)
    ip("-n", n1.netns, "route", "add", "10.250.0.0/24", "via", n2.address)
    for (const node of cluster.nodes) start(node)
    for (const node of cluster.nodes) await until(`${node.name}'s node file`, () => (cluster.probe(node, "/readyz").status === 200 ? true : undefined))
    await converged()
    expect(agentRoutes(n1)).toEqual(expectedRoutes(n1))
    expect(agentRoutes(n1)).toHaveLength(2)
    expect(agentRoutes(n1).some((route) => route.startsWith("10.244.99.0/24"))).toBe(false)
    const foreign = JSON.parse(ip("-j", "-n", n1.netns, "route", "show", "10.250.0.0/24")) as Array<{ gateway: string; protocol?: string }>
    expect(foreign).toEqual([expect.objectContaining({ gateway: n2.address })])
    expect(agents.get(n1.name)!.log()).toContain("removed route 10.244.99.0/24")
    const metrics = cluster.probe(n1, "/metrics").body
    expect(metrics).toContain("tscni_agent_peers 2")
    expect(metrics).toContain("tscni_agent_unreachable_peers 0")
  })

  test("pods on every node reach every pod on the other nodes, and the receiver sees the sender's pod IP", async () => {
    for (const [index, node] of cluster.nodes.entries()) pods.push(makePod(node, index))
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue
        const ping = Bun.spawnSync(["ip", "netns", "exec", from.netns, "ping", "-c", "1", "-W", "5", to.ip])
        expect({ from: from.ip, to: to.ip, exitCode: ping.exitCode }).toEqual({ from: from.ip, to: to.ip, exitCode: 0 })
      }
    }
    expect(await sourceSeen(pods[0]!, pods[1]!)).toBe(pods[0]!.ip)
    expect(await sourceSeen(pods[2]!, pods[0]!)).toBe(pods[2]!.ip)
  })

  test("a route deleted by hand comes back at the next resync", async () => {
    const [n1, n2] = cluster.nodes as [TestNode, TestNode]
    ip("-n", n1.netns, "route", "del", subnetOf(n2))
    expect(agentRoutes(n1)).not.toContain(`${subnetOf(n2)} via ${n2.address}`)
    await converged()
    expect(agentRoutes(n1)).toContain(`${subnetOf(n2)} via ${n2.address}`)
  })

  test("a stopped agent changes no route; a node that leaves is removed from every other node", async () => {
    const n3 = cluster.nodes[2]!
    const before = cluster.nodes.map(agentRoutes)
    const agent = agents.get(n3.name)!
    process.kill(agent.pid, "SIGTERM")
    await agent.exited
    // stopped: its routes stay (pods keep talking), and so do the others' routes to it
    expect(cluster.nodes.map(agentRoutes)).toEqual(before)
    agents.delete(n3.name)
    const left = cluster.agentCommand(n3, ["leave", "--etcd-endpoints", cluster.etcd.endpoint, "--etcd-prefix", cluster.prefix, "--node", n3.name])
    expect(left.exitCode).toBe(0)
    await converged()
    for (const node of cluster.nodes.slice(0, 2)) expect(agentRoutes(node).some((route) => route.endsWith(`via ${n3.address}`))).toBe(false)
  })
})
