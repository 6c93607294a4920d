/**
 * VXLAN and `auto` across test clusters of namespaces (etcd from Debian on the underlay, the
 * compiled `tscni agent` in each node), observed with `ip -d -j link`, `ip -j neigh`,
 * `bridge -j fdb`, `ip -j route` and traffic between pods made by the compiled bridge plugin:
 *   - vxlan, 3 nodes on one segment: the device as configured, one neighbour, forwarding
 *     entry and onlink route per peer; pods reach each other, the receiver sees the sender's
 *     pod IP; the largest don't-fragment ping that fits the pods' MTU passes and one byte
 *     more fails with "message too long"; an agent restart during a ping loses nothing; a
 *     node that leaves is removed everywhere;
 *   - a routed topology (node 3 behind a router on another segment): host-gw cannot reach
 *     node 3 and says so (log, /readyz); auto routes node 2 by host-gw and node 3 by VXLAN,
 *     and every pod reaches every pod.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import { agentRoutes, makeCluster, makePod, nodeFileOf, pings, type RunningAgent, sourceSeen, type TestCluster, type TestNode, type TestPod, until } from "./cluster.ts"

const DEVICE = "tscni.7"
let dir: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tscni-vxlan-"))
})
afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

/** Starts every node's agent and waits until each is ready. */
const startAll = async (cluster: TestCluster, agents: Map<string, RunningAgent>) => {
  for (const node of cluster.nodes) agents.set(node.name, cluster.startAgent(node, ["--lease-ttl", "30", "--resync-interval", "1"]))
  for (const node of cluster.nodes) await until(`${node.name} ready`, () => (cluster.probe(node, "/readyz").status === 200 ? true : undefined))
}

const json = <T>(argv: ReadonlyArray<string>): T => JSON.parse(Bun.spawnSync([...argv]).stdout.toString() || "[]") as T

const neighbours = (node: TestNode) =>
  json<Array<{ dst: string; lladdr: string; state: Array<string> }>>(["ip", "-j", "-n", node.netns, "neigh", "show", "dev", DEVICE])
    .filter((entry) => entry.state.includes("PERMANENT")).map((entry) => `${entry.dst} ${entry.lladdr}`).sort()

const fdb = (node: TestNode) =>
  json<Array<{ mac: string; dst?: string }>>(["bridge", "-j", "-n", node.netns, "fdb", "show", "dev", DEVICE])
    .filter((entry) => entry.dst !== undefined).map((entry) => `${entry.mac} ${entry.dst}`).sort()

const device = (node: TestNode) => json<Array<{ address: string; mtu: number; linkinfo: { info_kind: string; info_data: { id: number; port: number; local: string; learning: boolean } } }>>(["ip", "-d", "-j", "-n", node.netns, "link", "show", DEVICE])[0]

const macOf = (node: TestNode) => device(node)!.address

describe("vxlan across three nodes", () => {
  let cluster: TestCluster
  const agents = new Map<string, RunningAgent>()
  const pods: Array<TestPod> = []

  beforeAll(async () => {
    cluster = await makeCluster(3)
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "vxlan", vni: 7 } }))
    await startAll(cluster, agents)
  })
  afterAll(async () => {
    await cluster?.remove()
  })

  /** What a node should have for its running peers: neighbours, forwarding entries, routes. */
  const expected = (node: TestNode) => {
    const peers = cluster.nodes.filter((peer) => peer !== node && agents.has(peer.name))
    const zero = (peer: TestNode) => nodeFileOf(peer).subnets[0]!.split("/")[0]!
    return {
      neighbours: peers.map((peer) => `${zero(peer)} ${macOf(peer)}`).sort(),
      fdb: peers.map((peer) => `${macOf(peer)} ${peer.address}`).sort(),
      routes: peers.map((peer) => `${nodeFileOf(peer).subnets[0]} via ${zero(peer)} dev ${DEVICE}`).sort()
    }
  }
  const actual = (node: TestNode) => ({ neighbours: neighbours(node), fdb: fdb(node), routes: agentRoutes(node) })
  const converged = () =>
    until("every node to hold its peers' entries", () =>
      cluster.nodes.every((node) => !agents.has(node.name) || JSON.stringify(actual(node)) === JSON.stringify(expected(node))) ? true : undefined)

  test("each node has its VXLAN device as configured, and per peer a neighbour, a forwarding entry and an onlink route", async () => {
    await converged()
    const n1 = cluster.nodes[0]!
    const vx = device(n1)!
    expect(vx.linkinfo.info_kind).toBe("vxlan")
    expect(vx.linkinfo.info_data).toEqual(expect.objectContaining({ id: 7, port: 8472, local: n1.address, learning: false }))
    // the underlay's 1500 minus VXLAN's 50, in the device and in the node file
    expect(vx.mtu).toBe(1450)
    expect(nodeFileOf(n1).mtu).toBe(1450)
    const zero = nodeFileOf(n1).subnets[0]!.replace(/\/\d+$/, "/32")
    expect(json<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(["ip", "-j", "-n", n1.netns, "addr", "show", "dev", DEVICE])[0]!.addr_info
      .map((a) => `${a.local}/${a.prefixlen}`)).toContain(zero)
    expect(actual(n1)).toEqual(expected(n1))
    expect(actual(n1).routes).toHaveLength(2)
    const routes = json<Array<{ dst: string; flags: Array<string> }>>(["ip", "-j", "-n", n1.netns, "route", "show", "proto", "116"])
    expect(routes.every((route) => route.flags.includes("onlink"))).toBe(true)
  })

  test("pods on every node reach every other pod over VXLAN, and the receiver sees the sender's pod IP", async () => {
    for (const node of cluster.nodes) pods.push(makePod(node, dir))
    for (const from of pods) {
      for (const to of pods) {
        if (from !== to) expect({ from: from.ip, to: to.ip, exitCode: pings(from, to).exitCode }).toEqual({ from: from.ip, to: to.ip, exitCode: 0 })
      }
    }
    expect(await sourceSeen(pods[0]!, pods[2]!)).toBe(pods[0]!.ip)
  })

  test("the largest don't-fragment ping that fits the pods' MTU crosses nodes; one byte more fails with 'message too long'", () => {
    const [a, b] = pods as [TestPod, TestPod]
    // 1450 − 20 (IPv4) − 8 (ICMP)
    const fits = pings(a, b, ["-M", "do", "-s", "1422"])
    expect(fits.exitCode).toBe(0)
    const tooBig = pings(a, b, ["-M", "do", "-s", "1423"])
    expect(tooBig.exitCode).not.toBe(0)
    expect(tooBig.stdout.toString() + tooBig.stderr.toString()).toContain("message too long")
  })

  test("an agent restart while pods talk loses no packet and changes nothing in the kernel", async () => {
    const [a, b] = pods as [TestPod, TestPod]
    const n1 = cluster.nodes[0]!
    const before = { ...actual(n1), device: device(n1) }
    const ping = Bun.spawn(["ip", "netns", "exec", a.netns, "ping", "-c", "40", "-i", "0.05", "-W", "5", b.ip], { stdout: "pipe" })
    const agent = agents.get(n1.name)!
    process.kill(agent.pid, "SIGTERM")
    await agent.exited
    const again = cluster.startAgent(n1, ["--lease-ttl", "30", "--resync-interval", "1"])
    agents.set(n1.name, again)
    await until("the restarted agent to reconcile", () => (again.log().includes(" holds ") && cluster.probe(n1, "/metrics").body.includes("tscni_agent_peers 2") ? true : undefined))
    const output = await new Response(ping.stdout).text()
    expect(await ping.exited).toBe(0)
    expect(output).toContain("40 packets transmitted, 40 received, 0% packet loss")
    expect({ ...actual(n1), device: device(n1) }).toEqual(before)
    // nothing was set again: the restarted agent's reconciles changed no kernel object
    expect(cluster.probe(n1, "/metrics").body).toContain("tscni_agent_kernel_changes_total 0")
  })

  test("a node that leaves is removed from every other node (its neighbour, forwarding entry and route), also by an agent that was down meanwhile, at its start", async () => {
    const [n1, , n3] = cluster.nodes as [TestNode, TestNode, TestNode]
    const stopAgent = async (node: TestNode) => {
      const agent = agents.get(node.name)!
      process.kill(agent.pid, "SIGTERM")
      await agent.exited
      agents.delete(node.name)
    }
    // node1's agent is down while node3 leaves: node1 keeps node3's entries until it starts again
    await stopAgent(n1)
    await stopAgent(n3)
    expect(cluster.agentCommand(n3, ["leave", "--etcd-endpoints", cluster.etcd.endpoint, "--etcd-prefix", cluster.prefix, "--node", n3.name]).exitCode).toBe(0)
    expect(fdb(n1).some((entry) => entry.endsWith(` ${n3.address}`))).toBe(true)
    agents.set(n1.name, cluster.startAgent(n1, ["--lease-ttl", "30", "--resync-interval", "1"]))
    await converged()
    for (const node of cluster.nodes.slice(0, 2)) {
      expect(fdb(node).some((entry) => entry.endsWith(` ${n3.address}`))).toBe(false)
      expect(actual(node).routes).toHaveLength(1)
    }
    // the restarted agent says what it removed (read from its stderr as it comes: waited for, not raced)
    await until("node1's agent to log the removal", () => (/removed fdb .* dst /.test(agents.get(n1.name)!.log()) ? true : undefined))
  })
})

describe("a routed topology: node 3 behind a router, on another segment", () => {
  let cluster: TestCluster
  const agents = new Map<string, RunningAgent>()

  beforeAll(async () => {
    cluster = await makeCluster(3, { routed: [3] })
  })
  afterAll(async () => {
    await cluster?.remove()
  })

  test("host-gw routes node 2 but cannot reach node 3, and says so in its log and on /readyz", async () => {
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "host-gw" } }))
    await startAll(cluster, agents)
    const [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode]
    const said = await until("node1 to report node3 unreachable", () => {
      const body = cluster.probe(n1, "/readyz").body
      return body.includes("cannot reach node3") ? body : undefined
    })
    expect(said).toContain(`cannot reach node3 (${n3.address} is not on eth0's L2 segment)`)
    const line = `host-gw cannot reach node3 (${n3.address} is not on eth0's L2 segment)`
    await until("node1 to log it", () => (agents.get(n1.name)!.log().includes(line) ? true : undefined))
    await until("node1 to route node2", () => (agentRoutes(n1).length === 1 ? true : undefined))
    expect(agentRoutes(n1)).toEqual([`${nodeFileOf(n2).subnets[0]} via ${n2.address} dev eth0`])
    for (const node of cluster.nodes) {
      const agent = agents.get(node.name)!
      process.kill(agent.pid, "SIGTERM")
      await agent.exited
    }
    agents.clear()
  })

  test("auto: host-gw to node 2 (same segment), VXLAN to node 3 (routed), and every pod reaches every pod", async () => {
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "auto", vni: 7 } }))
    await startAll(cluster, agents)
    const [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode]
    const zero = (node: TestNode) => nodeFileOf(node).subnets[0]!.split("/")[0]!
    const wanted = [
      `${nodeFileOf(n2).subnets[0]} via ${n2.address} dev eth0`,
      `${nodeFileOf(n3).subnets[0]} via ${zero(n3)} dev ${DEVICE}`
    ].sort()
    await until("node1 to route node2 by host-gw and node3 by VXLAN", () => (agentRoutes(n1).join() === wanted.join() ? true : undefined))
    expect(fdb(n1)).toEqual([`${macOf(n3)} ${n3.address}`])
    // node3 reaches both others over VXLAN
    await until("node3 to route both peers by VXLAN", () => (agentRoutes(n3).filter((route) => route.endsWith(`dev ${DEVICE}`)).length === 2 ? true : undefined))
    expect(cluster.probe(n1, "/readyz").body).not.toContain("cannot reach")
    const pods = cluster.nodes.map((node) => makePod(node, join(dir, "auto")))
    for (const from of pods) {
      for (const to of pods) {
        if (from !== to) expect({ from: from.ip, to: to.ip, exitCode: pings(from, to).exitCode }).toEqual({ from: from.ip, to: to.ip, exitCode: 0 })
      }
    }
    expect(await sourceSeen(pods[2]!, pods[0]!)).toBe(pods[2]!.ip)

  })
})

describe("dual stack over VXLAN", () => {
  let cluster: TestCluster
  const agents = new Map<string, RunningAgent>()

  beforeAll(async () => {
    cluster = await makeCluster(2)
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", ipv6Network: "fd00:10:244::/48", backend: { type: "vxlan", vni: 7 } }))
    await startAll(cluster, agents)
  })
  afterAll(async () => {
    await cluster?.remove()
  })

  test("each node leases an IPv4 and an IPv6 subnet; pods get both and reach each other across nodes over both families", async () => {
    const [n1, n2] = cluster.nodes as [TestNode, TestNode]
    expect(nodeFileOf(n1).subnets).toHaveLength(2)
    const v6 = (node: TestNode) => nodeFileOf(node).subnets.find((subnet) => subnet.includes(":"))!
    // node1: an onlink route and a neighbour for node2's IPv6 subnet, over the same VTEP
    const zero6 = v6(n2).split("/")[0]!
    await until("node1 to route node2's IPv6 subnet", () => (agentRoutes(n1).includes(`${v6(n2)} via ${zero6} dev ${DEVICE}`) ? true : undefined))
    expect(neighbours(n1)).toContain(`${zero6} ${macOf(n2)}`)
    expect(fdb(n1)).toEqual([`${macOf(n2)} ${n2.address}`])
    const [a, b] = [makePod(n1, join(dir, "dual")), makePod(n2, join(dir, "dual"))]
    const addressesOf = (pod: TestPod) =>
      json<Array<{ addr_info: Array<{ local: string; scope: string }> }>>(["ip", "-j", "-n", pod.netns, "addr", "show", "dev", "eth0"])[0]!.addr_info
        .filter((info) => info.scope === "global").map((info) => info.local)
    const b6 = addressesOf(b).find((address) => address.includes(":"))!
    expect(b6.startsWith(v6(n2).split("::")[0]!)).toBe(true)
    expect(pings(a, b).exitCode).toBe(0)
    const ping6 = Bun.spawnSync(["ip", "netns", "exec", a.netns, "ping", "-6", "-c", "1", "-W", "5", b6])
    expect(ping6.exitCode).toBe(0)
    expect(await sourceSeen(a, { netns: b.netns, ip: b6 })).toBe(addressesOf(a).find((address) => address.includes(":"))!)
  })
})
