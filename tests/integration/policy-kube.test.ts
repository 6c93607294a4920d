/**
 * NetworkPolicy with the Kubernetes datastore: the agents list and watch Namespaces, Pods
 * and NetworkPolicies on the conventions test API server (kube-apiserver.ts; no real
 * kube-apiserver runs here, see docs/cluster.md), pods' addresses come from their
 * status.podIPs (written here as kubelet would) and from the ADDs each agent served.
 * Updates are merge patches (MODIFIED events), deletions DELETED; a watch too old (410)
 * lists again. Every probe is checked against the same oracle as the etcd truth tables.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test"
import { makePolicyWorld, namespaceObject, podObject, type PolicyWorld } from "./policy-cluster.ts"

let world: PolicyWorld

beforeAll(async () => {
  world = await makePolicyWorld({ datastore: "kubernetes" })
}, 300_000)

afterEach(async () => {
  await world.clearPolicies()
})

afterAll(async () => {
  await world?.remove()
})

const policy = (name: string, namespace: string, spec: Record<string, unknown>) => ({ metadata: { name, namespace }, spec })
const expectTruthTable = async (policies: ReadonlyArray<ReturnType<typeof policy>> = []) => {
  for (const p of policies) await world.apply(p)
  expect(await world.mismatches()).toEqual([])
}

describe("NetworkPolicy from the Kubernetes API (3 nodes, 9 pods)", () => {
  test("no policy: every pod reaches every pod", () => expectTruthTable())

  test("default deny ingress and egress in x", () => expectTruthTable([policy("deny", "x", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })]))

  test("allow to x/a from namespace y on a named port", () =>
    expectTruthTable([policy("named", "x", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: "serve-80-tcp" }] }] })]))

  test("pod and namespace labels changed by merge patches (a label added, then removed with null)", async () => {
    await expectTruthTable([policy("from-new", "x", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { team: "new" } } }, { namespaceSelector: { matchLabels: { team: "new" } } }] }] })])
    const yb = world.pods.find((pod) => pod.key === "y/b")!
    await world.put("pods/y/b", { ...podObject("y", "b", { pod: "b", team: "new" }, yb.node.name), status: { podIP: yb.ip, podIPs: [{ ip: yb.ip }] } })
    await world.put("namespaces/z", namespaceObject("z", { ns: "z", team: "new" }))
    expect(await world.mismatches()).toEqual([])
    await world.put("pods/y/b", { ...podObject("y", "b", { pod: "b" }, yb.node.name), status: { podIP: yb.ip, podIPs: [{ ip: yb.ip }] } })
    await world.put("namespaces/z", namespaceObject("z"))
    expect(await world.mismatches()).toEqual([])
  })

  test("an updated policy, then a deleted one", async () => {
    await expectTruthTable([policy("changing", "y", { podSelector: {}, policyTypes: ["Egress"] })])
    await expectTruthTable([policy("changing", "y", { podSelector: {}, policyTypes: ["Egress"], egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }] })])
    await world.del("policies/y/changing")
    await expectTruthTable()
  })

  test("watches ended and history compacted: the agents list again (410) and enforce what changed meanwhile", async () => {
    const kube = world.cluster.kube!
    // a change no policy watch sees moves the store past the agents' resourceVersions; compacting there makes them too old
    await kube.send({ op: "patch", name: world.cluster.nodes[0]!.name, patch: { metadata: { labels: { touched: "yes" } } } })
    await kube.send({ op: "compact" })
    await kube.send({ op: "endWatches" })
    await expectTruthTable([policy("after-relist", "z", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })])
    for (const agent of world.agents) expect(agent.log()).toContain("the watch of /apis/networking.k8s.io/v1/networkpolicies is too old (410 Gone): listing again")
  })
})
