/**
 * The NetworkPolicy truth-table world on a test cluster (cluster.ts): namespaces x, y, z
 * with pods a, b, c each (labels `ns=<ns>`, `pod=<name>`, as the upstream e2e and Cyclonus
 * use), spread over the nodes, every pod serving TCP and UDP on 80 and 81 under the named
 * container ports `serve-<port>-<proto>`. Pod and Namespace objects are written to etcd
 * before the pods are ADDed through the node's agent, as kubelet's pods exist before their
 * sandboxes. A step writes to etcd and waits until every agent reports (its metric
 * tscni_policy_applied_revision) the revision of that write enforced: a condition, not a pause.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ip } from "./harness.ts"
import { makeCluster, makePod, type RunningAgent, type TestCluster, type TestPod, until } from "./cluster.ts"
import { expectedMatrix, type OraclePod, type OracleWorld, type Protocol } from "./netpol/oracle.ts"
import { diffMatrix, probeMatrix, type Prober, startProber } from "./netpol/prober.ts"

export const NAMESPACES = ["x", "y", "z"] as const
export const POD_NAMES = ["a", "b", "c"] as const
export const PORTS = [80, 81] as const
export const PROTOCOLS = ["TCP", "UDP"] as const

export interface PolicyPod extends TestPod {
  readonly namespace: string
  readonly name: string
  readonly key: string
}

export interface PolicyWorld {
  readonly cluster: TestCluster
  readonly agents: ReadonlyArray<RunningAgent>
  readonly pods: ReadonlyArray<PolicyPod>
  /** every object now in etcd, as the oracle reads them */
  readonly objects: () => OracleWorld
  /** writes `<prefix>/<path>` = JSON and waits until every agent enforces it */
  readonly put: (path: string, object: unknown) => Promise<void>
  readonly del: (path: string) => Promise<void>
  /** writes a NetworkPolicy (its namespace from metadata) */
  readonly apply: (policy: { readonly metadata: { readonly name: string; readonly namespace: string } }) => Promise<void>
  /** deletes every NetworkPolicy */
  readonly clearPolicies: () => Promise<void>
  /** probes every pod from every pod on every port; the mismatches with the oracle ([] = all as expected) */
  readonly mismatches: () => Promise<ReadonlyArray<string>>
  readonly remove: () => Promise<void>
}

export const podObject = (namespace: string, name: string, labels: Record<string, string> = { pod: name }) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace, labels },
  spec: {
    containers: [{
      name: "cont",
      ports: PORTS.flatMap((port) => PROTOCOLS.map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, containerPort: port, protocol })))
    }]
  }
})

export const namespaceObject = (name: string, labels: Record<string, string> = { ns: name }) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } })

/** The highest applied revision an agent reports on /metrics, or -1. */
const appliedRevision = (cluster: TestCluster, node: TestCluster["nodes"][number]): number => {
  const { status, body } = cluster.probe(node, "/metrics")
  const match = status === 200 ? /^tscni_policy_applied_revision (\d+)/m.exec(body) : null
  return match === null ? -1 : Number(match[1])
}

export const makePolicyWorld = async (): Promise<PolicyWorld> => {
  const dir = mkdtempSync(join(tmpdir(), "tscni-netpol-"))
  const cluster = await makeCluster(3)
  let prober: Prober | undefined
  const remove = async () => {
    await prober?.stop()
    await cluster.remove()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const objects = new Map<string, unknown>()
    const revisionOf = (output: string) => Number((JSON.parse(output) as { header: { revision: string | number } }).header.revision)
    const enforcedEverywhere = (revision: number) =>
      until(`every agent to enforce revision ${revision}`, () => cluster.nodes.every((node) => appliedRevision(cluster, node) >= revision) ? true : undefined)
    const put = async (path: string, object: unknown) => {
      objects.set(path, object)
      await enforcedEverywhere(revisionOf(cluster.etcd.etcdctl("put", "-w", "json", `${cluster.prefix}/${path}`, JSON.stringify(object))))
    }
    const del = async (path: string) => {
      objects.delete(path)
      await enforcedEverywhere(revisionOf(cluster.etcd.etcdctl("del", "-w", "json", `${cluster.prefix}/${path}`)))
    }
    cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, JSON.stringify({ network: "10.244.0.0/16", backend: { type: "host-gw" } }))
    const agents = cluster.nodes.map((node) => cluster.startAgent(node))
    await until("every agent to hold its subnet", () => cluster.nodes.every((node) => cluster.probe(node, "/readyz").status === 200) ? true : undefined)
    for (const ns of NAMESPACES) await put(`namespaces/${ns}`, namespaceObject(ns))
    const pods: Array<PolicyPod> = []
    let i = 0
    for (const namespace of NAMESPACES) {
      for (const name of POD_NAMES) {
        await put(`pods/${namespace}/${name}`, podObject(namespace, name))
        const node = cluster.nodes[i++ % cluster.nodes.length]!
        const pod = makePod(node, dir, { k8s: { namespace, name }, viaAgent: true })
        // lo up, as the runtime's loopback plugin does: a pod reaches itself
        ip("-n", pod.netns, "link", "set", "lo", "up")
        pods.push({ ...pod, namespace, name, key: `${namespace}/${name}` })
      }
    }
    prober = await startProber(pods.map((pod) => ({ netns: pod.netns, key: pod.key })), dir)
    const running = prober
    const objectsForOracle = (): OracleWorld => {
      const all = [...objects]
      const kind = (k: string) => all.filter(([path]) => path.startsWith(`${k}/`)).map(([, object]) => object as { metadata: { name: string; namespace?: string; labels?: Record<string, string> } })
      const byKey = new Map(pods.map((pod) => [pod.key, pod]))
      return {
        namespaces: kind("namespaces").map((ns) => ({ name: ns.metadata.name, labels: ns.metadata.labels ?? {} })),
        pods: kind("pods").flatMap((object): Array<OraclePod> => {
          const pod = byKey.get(`${object.metadata.namespace}/${object.metadata.name}`)
          if (pod === undefined) return []
          const ports = PORTS.flatMap((port) => PROTOCOLS.map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, port, protocol: protocol as Protocol })))
          return [{ namespace: pod.namespace, name: pod.name, labels: object.metadata.labels ?? {}, ips: [pod.ip], ports, node: pod.node.name }]
        }),
        policies: kind("policies")
      }
    }
    const mismatches = async () => {
      const world = objectsForOracle()
      const expected = expectedMatrix(world, world.pods, [...PORTS], [...PROTOCOLS])
      const actual = await probeMatrix(running, pods.map((pod) => ({ key: pod.key, ip: pod.ip })), [...PORTS], [...PROTOCOLS])
      return diffMatrix(expected, actual)
    }
    const policyPaths = () => [...objects.keys()].filter((path) => path.startsWith("policies/"))
    return {
      cluster,
      agents,
      pods,
      objects: objectsForOracle,
      put,
      del,
      apply: (policy) => put(`policies/${policy.metadata.namespace}/${policy.metadata.name}`, { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", ...policy }),
      clearPolicies: async () => {
        for (const path of policyPaths()) await del(path)
      },
      mismatches,
      remove
    }
  } catch (error) {
    await remove()
    throw error
  }
}
