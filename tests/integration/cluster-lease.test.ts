/**
 * `tscni agent` with the etcd datastore, for real: a 3-node test cluster (namespaces on an
 * underlay bridge, etcd from Debian started on it), the compiled agent in each node. Each
 * node leases a distinct subnet and writes its node file; a restart keeps the subnet; a
 * SIGKILLed node's lease expires after its TTL (etcd decides; the test waits until etcdctl
 * shows the key gone) and only then is its subnet handed out again; a reservation is
 * honoured; a claim deleted by hand comes back; `tscni agent leave` releases. Observed with
 * etcdctl, the node files and curl on /readyz and /metrics.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, readFileSync } from "node:fs"
import { makeCluster, type RunningAgent, type TestCluster, type TestNode, until } from "./cluster.ts"

let cluster: TestCluster
/** each node's running agent (its PID is the agent's: `ip netns exec` execs it) */
const agents = new Map<string, RunningAgent>()

const start = (node: TestNode, ttlSeconds: number): RunningAgent => {
  const agent = cluster.startAgent(node, ["--lease-ttl", String(ttlSeconds)])
  agents.set(node.name, agent)
  return agent
}

const stop = async (node: TestNode, signal: "SIGTERM" | "SIGKILL") => {
  const agent = agents.get(node.name)!
  process.kill(agent.pid, signal)
  await agent.exited
  agents.delete(node.name)
}

/** Waits until the agent has logged its claim; the log. */
const claimed = (agent: RunningAgent) => until("the agent to claim", () => (agent.log().includes(" holds ") ? agent.log() : undefined))

const CONFIG = { network: "10.244.0.0/16", subnetLen: 24, backend: { type: "vxlan" } }

beforeAll(async () => {
  cluster = await makeCluster(4)
})

afterAll(async () => {
  await cluster?.remove()
})

/** The claims in etcd, as `subnet-key → node (leased|reserved)`, read with etcdctl. */
const claims = (): Record<string, string> => {
  const out = cluster.etcd.etcdctl("get", "--prefix", `${cluster.prefix}/subnets/`, "-w", "json")
  const kvs = (JSON.parse(out) as { kvs?: Array<{ key: string; value: string; lease?: number }> }).kvs ?? []
  return Object.fromEntries(kvs.map((kv) => {
    const key = Buffer.from(kv.key, "base64").toString().slice(`${cluster.prefix}/subnets/`.length)
    const value = JSON.parse(Buffer.from(kv.value, "base64").toString()) as { node: string; publicIp?: string }
    return [key, `${value.node} ${value.publicIp ?? "-"} ${kv.lease === undefined || kv.lease === 0 ? "reserved" : "leased"}`]
  }))
}

const nodeFile = (node: TestNode) => (existsSync(node.nodeFile) ? JSON.parse(readFileSync(node.nodeFile, "utf8")) as { subnets: Array<string>; node: string; networks: Array<string>; mtu: number; backend: string } : undefined)

/** Waits until the node file names a subnet and the agent says it is ready; the subnet. */
const leased = async (node: TestNode): Promise<string> => {
  const subnet = await until(`${node.name}'s node file`, () => nodeFile(node)?.subnets[0])
  await until(`${node.name} ready`, () => (cluster.probe(node, "/readyz").status === 200 ? true : undefined))
  return subnet
}

describe("tscni agent with etcd: subnet leases", () => {
  test("without a cluster config the agent serves but is not ready, and says why; with one, each node leases a distinct subnet and writes its node file", async () => {
    const [n1, n2] = cluster.nodes as [TestNode, TestNode]
    const a1 = start(n1, 30)
    const notReady = await until("n1's readyz to answer", () => {
      const answer = cluster.probe(n1, "/readyz")
      return answer.status === 503 && answer.body.includes("no cluster config") ? answer : undefined
    })
    expect(notReady.body).toContain(`no subnet yet: no cluster config at ${cluster.prefix}/config in the datastore`)
    expect(cluster.probe(n1, "/healthz").status).toBe(200)
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify(CONFIG))
    start(n2, 30)
    const [s1, s2] = [await leased(n1), await leased(n2)]
    expect(new Set([s1, s2]).size).toBe(2)
    expect(claims()).toEqual({
      [s1.replace("/", "-")]: `node1 ${n1.address} leased`,
      [s2.replace("/", "-")]: `node2 ${n2.address} leased`
    })
    // the MTU is the underlay's (veth: 1500) minus VXLAN's 50
    expect(nodeFile(n1)).toEqual({ node: "node1", subnets: [s1], networks: ["10.244.0.0/16"], mtu: 1450, backend: "vxlan" })
    expect(cluster.probe(n1, "/readyz").body).toBe(`ready: holds ${s1} (new)\n`)
    const metrics = cluster.probe(n1, "/metrics").body
    expect(metrics).toContain(`tscni_agent_subnet_info{subnet="${s1}"} 1`)
    expect(metrics).toContain("tscni_agent_cluster_ready 1")
    expect(metrics).toMatch(/tscni_agent_reconcile_errors_total [1-9]/)
    await until("n1 to log its claim", () => (a1.log().includes(`node node1 holds ${s1} (new) on eth0 ${n1.address}`) ? true : undefined))
  })

  test("SIGTERM keeps the lease and the node file; the restarted agent gets the same subnet back (kept, not new)", async () => {
    const n1 = cluster.nodes[0]!
    const before = nodeFile(n1)!.subnets[0]!
    await stop(n1, "SIGTERM")
    expect(claims()[before.replace("/", "-")]).toBe(`node1 ${n1.address} leased`)
    expect(nodeFile(n1)!.subnets).toEqual([before])
    expect(await claimed(start(n1, 30))).toContain(`holds ${before} (kept)`)
  })

  test("a SIGKILLed node's lease expires after its TTL and only then is its subnet free; back with its node file, it gets that subnet again", async () => {
    const [, , n3, n4] = cluster.nodes as [TestNode, TestNode, TestNode, TestNode]
    // a TTL far longer than n4 takes to join: n3's lease is surely alive when n4 claims
    start(n3, 10)
    const s3 = await leased(n3)
    await stop(n3, "SIGKILL")
    // n4 joins while n3's lease is still alive: it never gets n3's subnet
    start(n4, 30)
    const s4 = await leased(n4)
    expect(s4).not.toBe(s3)
    expect(claims()[s3.replace("/", "-")]).toBe(`node3 ${n3.address} leased`)
    await until("n3's lease to expire", () => (claims()[s3.replace("/", "-")] === undefined ? true : undefined), 20_000)
    // n4 restarts without its node file: its lease, alive, still says which subnet is its own
    await stop(n4, "SIGTERM")
    Bun.spawnSync(["rm", "-f", n4.nodeFile])
    expect(await claimed(start(n4, 30))).toContain(`holds ${s4} (kept)`)
    // n3 comes back with its node file: its old subnet is free again, so it is n3's again
    expect(await claimed(start(n3, 30))).toContain(`holds ${s3} (new)`)
  })

  test("a claim deleted by hand is claimed again (the same subnet, from the node file); `leave` releases it for good", async () => {
    const n2 = cluster.nodes[1]!
    const s2 = nodeFile(n2)!.subnets[0]!
    const key = `${cluster.prefix}/subnets/${s2.replace("/", "-")}`
    cluster.etcd.etcdctl("del", key)
    await until("n2's claim to come back", () => (claims()[s2.replace("/", "-")] === `node2 ${n2.address} leased` ? true : undefined))
    await stop(n2, "SIGTERM")
    const left = cluster.agentCommand(n2, ["leave", "--etcd-endpoints", cluster.etcd.endpoint, "--etcd-prefix", cluster.prefix, "--node", "node2"])
    expect(left).toEqual({ exitCode: 0, stdout: `node node2 left: released ${s2}\n`, stderr: "" })
    expect(claims()[s2.replace("/", "-")]).toBeUndefined()
    const again = cluster.agentCommand(n2, ["leave", "--etcd-endpoints", cluster.etcd.endpoint, "--etcd-prefix", cluster.prefix, "--node", "node2"])
    expect(again.stdout).toBe("node node2 left: it held no lease\n")
  })

  test("a reservation (a claim with no lease) is the node's subnet, and leave keeps it", async () => {
    const n2 = cluster.nodes[1]!
    cluster.etcd.etcdctl("put", `${cluster.prefix}/subnets/10.244.200.0-24`, JSON.stringify({ node: "node2" }))
    expect(await claimed(start(n2, 30))).toContain("holds 10.244.200.0/24 (reserved)")
    expect(claims()["10.244.200.0-24"]).toBe(`node2 ${n2.address} reserved`)
    expect(nodeFile(n2)!.subnets).toEqual(["10.244.200.0/24"])
    await stop(n2, "SIGTERM")
    const left = cluster.agentCommand(n2, ["leave", "--etcd-endpoints", cluster.etcd.endpoint, "--etcd-prefix", cluster.prefix, "--node", "node2"])
    expect(left.stdout).toBe("node node2 left: it held no lease\n")
    expect(claims()["10.244.200.0-24"]).toBe(`node2 ${n2.address} reserved`)
  })

  test("SIGTERM stops the agent even with etcd gone, and its node file stays", async () => {
    const n1 = cluster.nodes[0]!
    await leased(n1)
    await cluster.etcd.stop()
    const agent = agents.get(n1.name)!
    process.kill(agent.pid, "SIGTERM")
    // a failure detector, not a pass condition: the agent must exit on its own
    const ended = await Promise.race([agent.exited.then((code) => `exit ${code}`), Bun.sleep(30_000).then(() => "still running after 30 s")])
    expect(ended).toBe("exit 0")
    agents.delete(n1.name)
    expect(nodeFile(n1)?.subnets).toHaveLength(1)
  })

  test("bad flags: exit 2 with the flag named, nothing started", () => {
    const n1 = cluster.nodes[0]!
    const noStore = cluster.agentCommand(n1, ["--node", "x", "--socket", "/tmp/nothing.sock"])
    expect(noStore.exitCode).toBe(2)
    expect(noStore.stderr).toContain("tscni agent: --node needs a datastore (--etcd-endpoints, or --datastore kubernetes)")
    const badTtl = cluster.agentCommand(n1, ["--etcd-endpoints", "http://127.0.0.1:1", "--lease-ttl", "1"])
    expect(badTtl.exitCode).toBe(2)
    expect(badTtl.stderr).toContain("--lease-ttl: '1' is not a whole number of seconds from 2")
    const badUrl = cluster.agentCommand(n1, ["--etcd-endpoints", "127.0.0.1:2379"])
    expect(badUrl.stderr).toContain("--etcd-endpoints: '127.0.0.1:2379' is not an http(s)://HOST:PORT URL")
  })
})
