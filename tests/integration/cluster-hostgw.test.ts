/**
 * host-gw across a 3-node test cluster (namespaces on one underlay bridge, etcd on it, the
 * compiled `tscni agent` in each node): every node routes every peer's subnet via the
 * peer, with tscni's route protocol, and nothing else of its routes changes; pods made by
 * the compiled bridge plugin on each node's subnet reach each other across nodes, and the
 * receiver sees the sender's pod IP (no NAT); a route deleted by hand comes back at the next
 * resync; a node that leaves is removed everywhere. Observed with `ip -j route` and traffic.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ip } from "./harness.ts"
import { agentRoutes, makeCluster, makePod, nodeFileOf, pings, type RunningAgent, sourceSeen, type TestCluster, type TestNode, type TestPod, until } from "./cluster.ts"

const TSCNI_PROTOCOL = "116"
let cluster: TestCluster
let dir: string
const agents = new Map<string, RunningAgent>()

const pods: Array<TestPod> = []

const subnetOf = (node: TestNode): string => nodeFileOf(node).subnets[0]!

const expectedRoutes = (node: TestNode): Array<string> =>
  cluster.nodes.filter((peer) => peer !== node && agents.has(peer.name)).map((peer) => `${subnetOf(peer)} via ${peer.address} dev eth0`).sort()

/** Waits until every running node routes exactly its running peers. */
const converged = () =>
  until("every node to route its peers", () =>
    cluster.nodes.every((node) => !agents.has(node.name) || agentRoutes(node).join() === expectedRoutes(node).join()) ? true : undefined)

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
    // the log is read from the agent's stderr as it comes: wait for the line, do not race it
    const log = await until("node1 to log the removal", () => (agents.get(n1.name)!.log().includes("removed route 10.244.99.0/24") ? agents.get(n1.name)!.log() : undefined))
    expect(log).toContain(`removed route 10.244.99.0/24 ${n2.address}`)
    const metrics = cluster.probe(n1, "/metrics").body
    expect(metrics).toContain("tscni_agent_peers 2")
    expect(metrics).toContain("tscni_agent_unreachable_peers 0")
  })

  test("pods on every node reach every pod on the other nodes (ICMP and TCP, full matrix), and the receiver sees the sender's pod IP", async () => {
    for (const node of cluster.nodes) pods.push(makePod(node, dir))
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue
        expect({ from: from.ip, to: to.ip, exitCode: pings(from, to).exitCode }).toEqual({ from: from.ip, to: to.ip, exitCode: 0 })
      }
    }
    // TCP, the full matrix: every receiver sees the sender's own pod IP (no NAT between pods)
    for (const from of pods) {
      for (const to of pods) {
        if (from !== to) expect({ from: from.ip, to: to.ip, seen: await sourceSeen(from, to) }).toEqual({ from: from.ip, to: to.ip, seen: from.ip })
      }
    }
  })

  test("a pod's traffic to a host outside the cluster network leaves with its node's address; to pods it never does", async () => {
    const [n1] = cluster.nodes as [TestNode]
    const listing = JSON.parse(Bun.spawnSync(["ip", "netns", "exec", n1.netns, "nft", "-j", "list", "tables"]).stdout.toString()) as { nftables: Array<{ table?: { family: string; name: string } }> }
    const masq = listing.nftables.flatMap((entry) => (entry.table?.name.startsWith("tscni-cluster-masq-") ? [entry.table] : []))
    expect(masq).toHaveLength(1)
    type Elem = { elem: { val: { prefix: { addr: string; len: number } }; comment: string } }
    const elements = JSON.parse(Bun.spawnSync(["ip", "netns", "exec", n1.netns, "nft", "-j", "list", "set", "inet", masq[0]!.name, "nets4"]).stdout.toString()) as { nftables: Array<{ set?: { elem?: Array<Elem> } }> }
    expect(elements.nftables.flatMap((entry) => entry.set?.elem ?? []).map((e) => `${e.elem.val.prefix.addr}/${e.elem.val.prefix.len} ${e.elem.comment}`)).toEqual(["10.244.0.0/16 tscni-agent"])
    expect(await sourceSeen(pods[0]!, cluster.outside)).toBe(n1.address)
    expect(await sourceSeen(pods[1]!, pods[0]!)).toBe(pods[1]!.ip)
  })

  test("a route deleted by hand comes back at the next resync", async () => {
    const [n1, n2] = cluster.nodes as [TestNode, TestNode]
    // the agent says each route it adds: one more such line proves it put this one back
    // (the deletion itself is `ip route del` succeeding; the resync may follow within a moment)
    const added = () => agents.get(n1.name)!.log().split("\n").filter((line) => line.includes(`added route ${subnetOf(n2)} ${n2.address}`)).length
    const before = added()
    ip("-n", n1.netns, "route", "del", subnetOf(n2))
    await until("node1's agent to add the route again", () => (added() > before ? true : undefined))
    await converged()
    expect(agentRoutes(n1)).toContain(`${subnetOf(n2)} via ${n2.address} dev eth0`)
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
    for (const node of cluster.nodes.slice(0, 2)) expect(agentRoutes(node).some((route) => route.includes(`via ${n3.address} `))).toBe(false)
  })
})

describe("host-gw, dual stack: IPv6 pod subnets routed via the peers' IPv6 underlay addresses", () => {
  let dual: TestCluster
  const running = new Map<string, RunningAgent>()

  beforeAll(async () => {
    dual = await makeCluster(2, { ipv6Underlay: true })
    dual.etcd.etcdctl("put", `${dual.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", ipv6Network: "fd00:10:244::/48", backend: { type: "host-gw" } }))
    for (const node of dual.nodes) running.set(node.name, dual.startAgent(node, ["--lease-ttl", "30", "--resync-interval", "1"]))
    for (const node of dual.nodes) await until(`${node.name} ready`, () => (dual.probe(node, "/readyz").status === 200 ? true : undefined))
  })
  afterAll(async () => {
    await dual?.remove()
  })

  test("each node routes the peer's IPv4 subnet via its IPv4 address and its IPv6 subnet via its IPv6 address; pods reach each other over both", async () => {
    const [n1, n2] = dual.nodes as [TestNode, TestNode]
    const [v4, v6] = nodeFileOf(n2).subnets as [string, string]
    const wanted = [`${v4} via ${n2.address} dev eth0`, `${v6} via ${n2.address6} dev eth0`].sort()
    await until("node1 to route node2's subnets by host-gw", () => (agentRoutes(n1).join() === wanted.join() ? true : undefined))
    expect(dual.probe(n1, "/readyz").body).not.toContain("cannot reach")
    const [a, b] = [makePod(n1, join(dir, "dual")), makePod(n2, join(dir, "dual"))]
    const b6 = (JSON.parse(ip("-j", "-n", b.netns, "addr", "show", "dev", "eth0")) as Array<{ addr_info: Array<{ local: string; scope: string }> }>)[0]!.addr_info
      .find((info) => info.scope === "global" && info.local.includes(":"))!.local
    expect(pings(a, b).exitCode).toBe(0)
    expect(Bun.spawnSync(["ip", "netns", "exec", a.netns, "ping", "-6", "-c", "1", "-W", "5", b6]).exitCode).toBe(0)
  })
})
