/**
 * `tscni agent` with the Kubernetes datastore, on a 3-node test cluster of namespaces whose
 * API server is the conventions-following test server (kube-apiserver.ts, run in the
 * cluster's namespace: TLS with its CA, a token from the kubeconfig). No real
 * kube-apiserver runs here: what is proven is the agent against those conventions.
 *   - the node's subnet is its spec.podCIDRs; a node without them is not ready and says why,
 *     and becomes ready when they are assigned;
 *   - each agent annotates its Node (public IP, backend, VTEP MAC); peers come from the
 *     Node objects; pods reach each other across nodes over VXLAN;
 *   - a Node deleted from the API is removed from every other node;
 *   - watches that the server ends are resumed, and a watch too old (410) lists again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { agentRoutes, makeCluster, makePod, nodeFileOf, pings, type RunningAgent, type TestCluster, type TestKubeApi, type TestNode, until } from "./cluster.ts"

let cluster: TestCluster
let kube: TestKubeApi
let dir: string
const agents = new Map<string, RunningAgent>()

const register = (node: TestNode, podCIDRs: ReadonlyArray<string>) =>
  kube.send({ op: "create", node: { metadata: { name: node.name }, spec: { podCIDRs }, status: { addresses: [{ type: "InternalIP", address: node.address }] } } })

/** Where a node's agent writes the cluster conflist (as the DaemonSet has it write /etc/cni/net.d/…). */
const conflistOf = (node: TestNode) => join(dirname(node.nodeFile), "net.d", "10-tscni-cluster.conflist")

const routesTo = (from: TestNode, subnet: string) => agentRoutes(from).some((route) => route.startsWith(`${subnet} via`))

/** A counter of an agent's /metrics. */
const metric = (node: TestNode, name: string): number => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(cluster.probe(node, "/metrics").body)?.[1] ?? Number.NaN)

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tscni-kube-cluster-"))
  cluster = await makeCluster(3, { datastore: "kubernetes" })
  kube = cluster.kube!
  writeFileSync(cluster.clusterConfigFile, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "vxlan" } }))
  const [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode]
  await register(n1, ["10.244.1.0/24"])
  await register(n2, ["10.244.2.0/24"])
  // node3 registers before kube-controller-manager gave it a subnet
  await register(n3, [])
  // no periodic resync to speak of: every change below must arrive through the watch
  for (const node of cluster.nodes) agents.set(node.name, cluster.startAgent(node, ["--resync-interval", "600", "--write-conflist", conflistOf(node)]))
})

afterAll(async () => {
  await cluster?.remove()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

describe("tscni agent with the Kubernetes datastore", () => {
  test("a node's subnet is its spec.podCIDRs; without them it is not ready and says why, and becomes ready once assigned", async () => {
    const [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode]
    for (const node of [n1, n2]) await until(`${node.name} ready`, () => (cluster.probe(node, "/readyz").status === 200 ? true : undefined))
    expect(nodeFileOf(n1).subnets).toEqual(["10.244.1.0/24"])
    expect(cluster.probe(n1, "/readyz").body).toBe("ready: holds 10.244.1.0/24 (assigned)\n")
    const waiting = await until("node3 to say why it is not ready", () => {
      const answer = cluster.probe(n3, "/readyz")
      return answer.status === 503 && answer.body.includes("podCIDRs") ? answer.body : undefined
    })
    expect(waiting).toContain("node node3 has no spec.podCIDRs yet (kube-controller-manager --allocate-node-cidrs assigns them)")
    // no conflist yet: the runtime holds node3's pods until its network is ready
    expect(existsSync(conflistOf(n3))).toBe(false)
    await kube.send({ op: "patch", name: n3.name, patch: { spec: { podCIDRs: ["10.244.3.0/24"] } } })
    await until("node3 ready", () => (cluster.probe(n3, "/readyz").status === 200 ? true : undefined), 30_000)
    expect(nodeFileOf(n3).subnets).toEqual(["10.244.3.0/24"])
    expect(JSON.parse(readFileSync(conflistOf(n3), "utf8"))).toEqual({
      cniVersion: "1.0.0",
      name: "tscni-cluster",
      plugins: [
        { type: "tscni-net", nodeFile: n3.nodeFile },
        { type: "portmap", capabilities: { portMappings: true } },
        { type: "bandwidth", capabilities: { bandwidth: true } }
      ]
    })
  })

  test("each agent annotates its Node; peers come from the Node objects, and pods reach each other across nodes", async () => {
    const [n1, n2] = cluster.nodes as [TestNode, TestNode, TestNode]
    const annotations = (await kube.send({ op: "get", name: n2.name }) as { metadata: { annotations: Record<string, string> } }).metadata.annotations
    expect(annotations).toEqual({ "tscni.io/public-ip": n2.address, "tscni.io/backend-type": "vxlan", "tscni.io/vtep-mac": expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/) })
    await until("node1 to route node2 and node3", () => (routesTo(n1, "10.244.2.0/24") && routesTo(n1, "10.244.3.0/24") ? true : undefined))
    const pods = cluster.nodes.map((node) => makePod(node, dir))
    for (const from of pods) {
      for (const to of pods) {
        if (from !== to) expect({ from: from.ip, to: to.ip, exitCode: pings(from, to).exitCode }).toEqual({ from: from.ip, to: to.ip, exitCode: 0 })
      }
    }
  })

  test("watches the server ends are resumed: a Node deleted afterwards is removed from every other node, and its agent says it is gone", async () => {
    const [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode]
    await kube.send({ op: "endWatches" })
    await kube.send({ op: "delete", name: n3.name })
    await until("node1 and node2 to drop node3", () => (!routesTo(n1, "10.244.3.0/24") && !routesTo(n2, "10.244.3.0/24") ? true : undefined))
    await until("node3's agent to notice", () => (agents.get(n3.name)!.log().includes("node node3 was deleted from the API server") ? true : undefined))
  })

  test("a watch too old for the server (410 after compaction) lists again, and the agents follow a Node that comes back", async () => {
    const [n1, , n3] = cluster.nodes as [TestNode, TestNode, TestNode]
    const errorsBefore = metric(n1, "tscni_agent_reconcile_errors_total")
    await kube.send({ op: "compact" })
    await kube.send({ op: "endWatches" })
    await register(n3, ["10.244.3.0/24"])
    await until("node1 to route node3 again", () => (routesTo(n1, "10.244.3.0/24") ? true : undefined), 30_000)
    await until("node3 ready again", () => (cluster.probe(n3, "/readyz").status === 200 ? true : undefined), 30_000)
    // the 410 was handled by listing again, not by failing and starting over
    expect(metric(n1, "tscni_agent_reconcile_errors_total")).toBe(errorsBefore)
  })
})
