/**
 * Churn on a host-gw test cluster (namespaces on one underlay, etcd from Debian, the
 * compiled agents, pods made by tscni-net): a node joins and every node routes to it; a
 * node's agent is SIGKILLed and, once its lease expired (etcd decides, after its TTL), every
 * other node removes it; etcd is out of reach for 30 s while pods talk across nodes and
 * nothing stops, and afterwards the agents see the cluster change again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { agentRoutes, makeCluster, makePod, nodeFileOf, pings, type RunningAgent, type TestCluster, type TestNode, until } from "./cluster.ts"

let cluster: TestCluster
let dir: string
const agents = new Map<string, RunningAgent>()

const start = (node: TestNode, ttl: number) => {
  agents.set(node.name, cluster.startAgent(node, ["--lease-ttl", String(ttl), "--resync-interval", "1"]))
}

/** Whether `node` routes exactly the running peers (by their subnets, via their addresses). */
const routesRunningPeers = (node: TestNode): boolean => {
  const wanted = cluster.nodes.filter((peer) => peer !== node && agents.has(peer.name)).map((peer) => `${nodeFileOf(peer).subnets[0]} via ${peer.address} dev eth0`).sort()
  return agentRoutes(node).join() === wanted.join()
}

const converged = () => until("every running node to route exactly its running peers", () =>
  cluster.nodes.every((node) => !agents.has(node.name) || routesRunningPeers(node)) ? true : undefined)

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tscni-churn-"))
  cluster = await makeCluster(4)
  cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "host-gw" } }))
  const [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode]
  start(n1, 60)
  start(n2, 60)
  start(n3, 5)
  for (const node of [n1, n2, n3]) await until(`${node.name} ready`, () => (cluster.probe(node, "/readyz").status === 200 ? true : undefined))
  await converged()
})

afterAll(async () => {
  await cluster?.remove()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

describe("churn", () => {
  test("a node that joins is routed by every node, and its pod reaches theirs", async () => {
    const n4 = cluster.nodes[3]!
    start(n4, 60)
    await until("node4 ready", () => (cluster.probe(n4, "/readyz").status === 200 ? true : undefined))
    await converged()
    const [a, b] = [makePod(cluster.nodes[0]!, dir), makePod(n4, dir)]
    expect(pings(a, b).exitCode).toBe(0)
    expect(pings(b, a).exitCode).toBe(0)
  })

  test("a SIGKILLed agent's node is removed from every other node once its lease expired, not before", async () => {
    const n3 = cluster.nodes[2]!
    const key = `${cluster.prefix}/subnets/${nodeFileOf(n3).subnets[0]!.replace("/", "-")}`
    const agent = agents.get(n3.name)!
    process.kill(agent.pid, "SIGKILL")
    await agent.exited
    // its routes stay on the others while the lease lives (it may be a restart): looked at
    // with etcd paused, so the lease cannot expire while the test looks (5 s TTL, ms after the kill)
    cluster.etcd.pause()
    try {
      expect(cluster.nodes.filter((node) => node !== n3).every((node) => agentRoutes(node).some((route) => route.includes(`via ${n3.address} `)))).toBe(true)
    } finally {
      cluster.etcd.resume()
    }
    await until("node3's lease to expire", () => (cluster.etcd.etcdctl("get", key, "--print-value-only").trim() === "" ? true : undefined))
    agents.delete(n3.name)
    await converged()
    for (const node of cluster.nodes.filter((node) => agents.has(node.name))) {
      expect(agentRoutes(node).some((route) => route.includes(`via ${n3.address} `))).toBe(false)
    }
  })

  test("etcd out of reach for 30 s: pods keep talking across nodes, agents stay ready; afterwards they follow the cluster again", async () => {
    const [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode]
    const [a, b] = [makePod(n1, dir), makePod(n2, dir)]
    cluster.etcd.pause()
    let resumed = false
    try {
      // one ping a second for 30 s, each of which must be answered
      const ping = Bun.spawn(["ip", "netns", "exec", a.netns, "ping", "-c", "30", "-i", "1", "-W", "5", b.ip], { stdout: "pipe" })
      const output = await new Response(ping.stdout).text()
      expect(await ping.exited).toBe(0)
      expect(output).toContain("30 packets transmitted, 30 received, 0% packet loss")
      expect(cluster.probe(n1, "/readyz").status).toBe(200)
      cluster.etcd.resume()
      resumed = true
    } finally {
      if (!resumed) cluster.etcd.resume()
    }
    // node3 comes back: every agent must see it through etcd again
    start(n3, 60)
    await until("node3 ready", () => (cluster.probe(n3, "/readyz").status === 200 ? true : undefined))
    await converged()
    expect(agentRoutes(n1).some((route) => route.includes(`via ${n3.address} `))).toBe(true)
  }, 120_000)
})
