/**
 * The NetworkPolicy truth-table world on a test cluster (cluster.ts): namespaces x, y, z
 * with pods a, b, c each (labels `ns=<ns>`, `pod=<name>`, as the upstream e2e and Cyclonus
 * use), spread over the nodes, every pod serving TCP and UDP on 80 and 81 under the named
 * container ports `serve-<port>-<proto>`. Pod and Namespace objects are written to etcd
 * before the pods are ADDed through the node's agent, as kubelet's pods exist before their
 * sandboxes. A step writes to etcd and waits until every agent reports (its metric
 * tscni_policy_applied_revision) the revision of that write enforced: a condition, not a pause.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
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
  /** the running agent of each node (a test that restarts one puts the new one here) */
  readonly agents: Array<RunningAgent>
  readonly pods: ReadonlyArray<PolicyPod>
  /** every object now in etcd, as the oracle reads them */
  readonly objects: () => OracleWorld
  /** writes `<prefix>/<path>` = JSON and waits until every agent enforces it */
  readonly put: (path: string, object: unknown) => Promise<void>
  readonly del: (path: string) => Promise<void>
  /** writes many `<prefix>/<path>` = JSON at once and waits until every agent enforces them all; how long that took (ms) */
  readonly putMany: (objects: ReadonlyArray<readonly [string, unknown]>) => Promise<number>
  /** deletes every key under `<prefix>/<path>` and waits until every agent enforces that */
  readonly delPrefix: (path: string) => Promise<void>
  /** writes a NetworkPolicy (its namespace from metadata) */
  readonly apply: (policy: { readonly metadata: { readonly name: string; readonly namespace: string } }) => Promise<void>
  /** deletes every NetworkPolicy */
  readonly clearPolicies: () => Promise<void>
  /** probes every pod from every pod on every port; the mismatches with the oracle ([] = all as expected) */
  readonly mismatches: () => Promise<ReadonlyArray<string>>
  /** the probe agents of the world's pods */
  readonly prober: Prober
  /** writes the Pod object, then ADDs the pod on node `nodeIndex` through its agent (not in `pods`, not in the matrix) */
  readonly addPod: (namespace: string, name: string, nodeIndex: number) => Promise<PolicyPod>
  /** probe agents for more pods (stopped with the world); their source ports do not overlap the others' */
  readonly startProbers: (pods: ReadonlyArray<PolicyPod>) => Promise<Prober>
  readonly remove: () => Promise<void>
}

export const podObject = (namespace: string, name: string, labels: Record<string, string> = { pod: name }, nodeName?: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace, labels },
  spec: {
    ...(nodeName === undefined ? {} : { nodeName }),
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

/** How a world writes its objects: put and delete by path under the prefix, each answering the revision it made. */
interface Writer {
  readonly put: (path: string, object: unknown) => Promise<number>
  readonly del: (path: string) => Promise<number>
}

const etcdRevision = (output: string) => Number((JSON.parse(output) as { header: { revision: string | number } }).header.revision)

const etcdWriter = (cluster: TestCluster): Writer => ({
  put: async (path, object) => etcdRevision(cluster.etcd.etcdctl("put", "-w", "json", `${cluster.prefix}/${path}`, JSON.stringify(object))),
  del: async (path) => etcdRevision(cluster.etcd.etcdctl("del", "-w", "json", `${cluster.prefix}/${path}`))
})

/** RFC 7386 from `before` to `after`: what changed, and null for what went. */
const mergePatchFrom = (before: unknown, after: unknown): unknown => {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)
  if (!isObject(before) || !isObject(after)) return after
  const patch: Record<string, unknown> = {}
  for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null
  for (const [key, value] of Object.entries(after)) {
    if (JSON.stringify(before[key]) !== JSON.stringify(value)) patch[key] = mergePatchFrom(before[key], value)
  }
  return patch
}

/** The Kubernetes API (the conventions test server): create, then merge patches (MODIFIED, as kubectl apply), delete. */
const kubeWriter = (cluster: TestCluster): Writer => {
  const kube = cluster.kube!
  const written = new Map<string, unknown>()
  const where = (path: string) => {
    const [kind, ...rest] = path.split("/")
    const resource = kind === "policies" ? "networkpolicies" : kind!
    return { resource, key: rest.join("/") }
  }
  const revisionOf = (answer: unknown) => Number((answer as { metadata: { resourceVersion: string } }).metadata.resourceVersion)
  return {
    put: async (path, object) => {
      const { resource, key } = where(path)
      const before = written.get(path)
      written.set(path, object)
      const answer = before === undefined
        ? await kube.send({ op: "createIn", resource, object })
        : await kube.send({ op: "patchIn", resource, key, patch: mergePatchFrom(before, object) })
      return revisionOf(answer)
    },
    del: async (path) => {
      written.delete(path)
      const { resource, key } = where(path)
      return revisionOf(await kube.send({ op: "removeIn", resource, key }))
    }
  }
}

/** The world on a 3-node cluster whose agents read etcd (default) or the Kubernetes API. */
export const makePolicyWorld = async (options: { readonly datastore?: "etcd" | "kubernetes" } = {}): Promise<PolicyWorld> => {
  const dir = mkdtempSync(join(tmpdir(), "tscni-netpol-"))
  const datastore = options.datastore ?? "etcd"
  const cluster = await makeCluster(3, { datastore })
  let prober: Prober | undefined
  const extraProbers: Array<Prober> = []
  const remove = async () => {
    await prober?.stop()
    for (const extra of extraProbers) await extra.stop()
    await cluster.remove()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const objects = new Map<string, unknown>()
    const writer = datastore === "etcd" ? etcdWriter(cluster) : kubeWriter(cluster)
    const enforcedEverywhere = (revision: number) =>
      until(`every agent to enforce revision ${revision}`, () => cluster.nodes.every((node) => appliedRevision(cluster, node) >= revision) ? true : undefined)
    const put = async (path: string, object: unknown) => {
      objects.set(path, object)
      await enforcedEverywhere(await writer.put(path, object))
    }
    const del = async (path: string) => {
      objects.delete(path)
      await enforcedEverywhere(await writer.del(path))
    }
    /** etcd only: many keys at once */
    const putMany = async (many: ReadonlyArray<readonly [string, unknown]>) => {
      for (const [path, object] of many) objects.set(path, object)
      const started = performance.now()
      await enforcedEverywhere(cluster.etcd.putMany(many.map(([path, object]) => [`${cluster.prefix}/${path}`, JSON.stringify(object)] as const)))
      return performance.now() - started
    }
    /** etcd only: every key under a path */
    const delPrefix = async (path: string) => {
      for (const key of [...objects.keys()]) if (key.startsWith(path)) objects.delete(key)
      await enforcedEverywhere(etcdRevision(cluster.etcd.etcdctl("del", "-w", "json", "--prefix", `${cluster.prefix}/${path}`)))
    }
    const config = JSON.stringify({ network: "10.244.0.0/16", backend: { type: "host-gw" } })
    if (datastore === "etcd") cluster.etcd.etcdctl("put", `${cluster.prefix}/config`, config)
    else {
      // the nodes as kubelet registers them, with the subnets kube-controller-manager assigns
      writeFileSync(cluster.clusterConfigFile, config)
      for (const [i, node] of cluster.nodes.entries()) {
        await cluster.kube!.send({ op: "create", node: { metadata: { name: node.name }, spec: { podCIDRs: [`10.244.${i + 1}.0/24`] }, status: { addresses: [{ type: "InternalIP", address: node.address }] } } })
      }
    }
    const agents = cluster.nodes.map((node) => cluster.startAgent(node))
    await until("every agent to hold its subnet", () => cluster.nodes.every((node) => cluster.probe(node, "/readyz").status === 200) ? true : undefined)
    for (const ns of NAMESPACES) await put(`namespaces/${ns}`, namespaceObject(ns))
    /** The Pod object first (kubelet's pods exist before their sandboxes), then the ADD through the node's agent. */
    const addPod = async (namespace: string, name: string, nodeIndex: number): Promise<PolicyPod> => {
      const node = cluster.nodes[nodeIndex % cluster.nodes.length]!
      const object = podObject(namespace, name, { pod: name }, node.name)
      await put(`pods/${namespace}/${name}`, object)
      const pod = makePod(node, dir, { k8s: { namespace, name }, viaAgent: true })
      // lo up, as the runtime's loopback plugin does: a pod reaches itself
      ip("-n", pod.netns, "link", "set", "lo", "up")
      // with the Kubernetes API, the other nodes learn the pod's address from its status, as kubelet reports it
      if (datastore === "kubernetes") await put(`pods/${namespace}/${name}`, { ...object, status: { podIP: pod.ip, podIPs: [{ ip: pod.ip }] } })
      return { ...pod, namespace, name, key: `${namespace}/${name}` }
    }
    const pods: Array<PolicyPod> = []
    let i = 0
    for (const namespace of NAMESPACES) {
      for (const name of POD_NAMES) pods.push(await addPod(namespace, name, i++))
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
      putMany,
      delPrefix,
      apply: (policy) => put(`policies/${policy.metadata.namespace}/${policy.metadata.name}`, { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", ...policy }),
      clearPolicies: async () => {
        for (const path of policyPaths()) await del(path)
      },
      mismatches,
      prober: running,
      addPod,
      startProbers: async (more) => {
        const started = await startProber(more.map((pod) => ({ netns: pod.netns, key: pod.key })), dir, { firstSourcePort: 56_000 + 1000 * extraProbers.length })
        extraProbers.push(started)
        return started
      },
      remove
    }
  } catch (error) {
    await remove()
    throw error
  }
}

/**
 * A synthetic crowd for scale: namespaces `ns-<k>` (labels ns, tier), pods `p-<j>` on nodes
 * that are not the test's (only their endpoint records: one in five also has a Pod object
 * with labels and a named port), and policies of four shapes (namespace selector and port;
 * pod selector and named port; egress to an ipBlock with except; matchExpressions and a UDP
 * port range). The first `selectingXa` policies select x/a instead (from namespaces that
 * never probe it). As `[path under the prefix, object]`.
 */
export const farPodsAndPolicies = (options: { readonly namespaces: number; readonly podsPerNamespace: number; readonly policiesPerNamespace: number; readonly selectingXa?: number }) => {
  const many: Array<readonly [string, unknown]> = []
  let policies = 0
  for (let k = 0; k < options.namespaces; k++) {
    const ns = `ns-${k}`
    many.push([`namespaces/${ns}`, namespaceObject(ns, { ns, tier: `t${k % 5}` })])
    for (let j = 0; j < options.podsPerNamespace; j++) {
      if (j % 5 === 0) many.push([`pods/${ns}/p-${j}`, { kind: "Pod", metadata: { name: `p-${j}`, namespace: ns, labels: { app: `a${j % 5}` } }, spec: { containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] } }])
      many.push([`endpoints/${ns}/p-${j}`, { node: `far-${k % 10}`, ips: [`10.250.${k}.${j + 2}`], containerID: `far-${k}-${j}` }])
    }
    for (let i = 0; i < options.policiesPerNamespace; i++) {
      const namespace = policies++ < (options.selectingXa ?? 0) ? "x" : ns
      const podSelector = namespace === "x" ? { matchLabels: { pod: "a" } } : i % 2 === 0 ? {} : { matchLabels: { app: `a${i % 5}` } }
      const spec = [
        { podSelector, ingress: [{ from: [{ namespaceSelector: { matchLabels: { tier: `t${i % 5}` } } }], ports: [{ port: 80 }] }] },
        { podSelector, ingress: [{ from: [{ podSelector: { matchLabels: { app: `a${(i + 1) % 5}` } } }], ports: [{ port: "http" }] }] },
        { podSelector, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: [`10.250.${k}.0/24`] } }] }] },
        { podSelector, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["t1", "t3"] }] }, podSelector: {} }], ports: [{ port: 81, endPort: 90, protocol: "UDP" }] }] }
      ][i % 4]!
      many.push([`policies/${namespace}/p-${k}-${i}`, { kind: "NetworkPolicy", metadata: { name: `p-${k}-${i}`, namespace }, spec }])
    }
  }
  return many
}
