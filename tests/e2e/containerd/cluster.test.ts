/**
 * containerd's CRI on every node of a test cluster (tests/integration/cluster.ts: node
 * namespaces on an underlay, etcd, the compiled `tscni agent` per node over VXLAN): one
 * private containerd per node, whose conflist starts with tscni-net reading that node's
 * node file. Sandboxes made through the CRI on different nodes reach each other across the
 * cluster network, and the receiving end's address is the sender's sandbox IP.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { join } from "node:path"
import { makeCluster, type RunningAgent, type TestCluster, type TestNode, until } from "../../integration/cluster.ts"
import { type ContainerdNode, sandboxConfig, sandboxNetwork, startNode } from "./harness.ts"

const ENABLED = process.env.TSCNI_CONTAINERD === "1"

describe.skipIf(!ENABLED)("containerd on every node of a cluster", () => {
  let cluster: TestCluster
  const agents: Array<RunningAgent> = []
  const runtimes: Array<ContainerdNode> = []

  beforeAll(async () => {
    cluster = await makeCluster(2)
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "vxlan" } }))
    for (const node of cluster.nodes) agents.push(cluster.startAgent(node, ["--lease-ttl", "30", "--resync-interval", "1"]))
    for (const node of cluster.nodes) await until(`${node.name} ready`, () => (cluster.probe(node, "/readyz").status === 200 ? true : undefined))
    for (const node of cluster.nodes) {
      runtimes.push(await startNode({
        netns: node.netns,
        firstPlugin: (ipamDir) => ({ type: "tscni-net", nodeFile: node.nodeFile, dataDir: join(ipamDir, "delegates"), delegate: { bridge: "cni0", ipam: { dataDir: ipamDir } } })
      }))
    }
  }, 180_000)
  afterAll(async () => {
    for (const runtime of runtimes) await runtime.stop()
    await cluster?.remove()
  })

  test("a sandbox on each node gets its node's subnet, and they reach each other across the cluster network", async () => {
    const sandboxes = []
    for (const [index, runtime] of runtimes.entries()) {
      const { podSandboxId } = await runtime.cri.call("runPodSandbox", { config: sandboxConfig(`cluster-${index}`) })
      sandboxes.push({ id: String(podSandboxId), runtime, node: cluster.nodes[index] as TestNode, ...(await sandboxNetwork(runtime.cri, podSandboxId)) })
    }
    for (const sandbox of sandboxes) {
      const subnet = (JSON.parse(await Bun.file(sandbox.node.nodeFile).text()) as { subnets: Array<string> }).subnets[0]!
      expect(sandbox.ip.startsWith(subnet.split(".").slice(0, 3).join("."))).toBe(true)
    }
    const [a, b] = sandboxes as [typeof sandboxes[0], typeof sandboxes[0]]
    expect(Bun.spawnSync(["nsenter", `--net=${a.netnsPath}`, "ping", "-c", "1", "-W", "5", b.ip]).exitCode).toBe(0)
    expect(Bun.spawnSync(["nsenter", `--net=${b.netnsPath}`, "ping", "-c", "1", "-W", "5", a.ip]).exitCode).toBe(0)
    for (const sandbox of sandboxes) {
      await sandbox.runtime.cri.call("stopPodSandbox", { podSandboxId: sandbox.id })
      await sandbox.runtime.cri.call("removePodSandbox", { podSandboxId: sandbox.id })
    }
  }, 120_000)
})
