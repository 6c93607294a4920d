/**
 * NetworkPolicy enforced as the API defines it: the upstream e2e cases (test/e2e/network/
 * netpol) over a 3-node test cluster (etcd, compiled agents, host-gw), namespaces x, y, z
 * with pods a, b, c each spread over the nodes (so every case has same-node bridged and
 * cross-node routed pairs), every pod probing every pod on TCP and UDP 80 and 81 after each
 * step. The expected truth table comes from the oracle in netpol/oracle.ts, written from the
 * Kubernetes documentation, not from the agent's code. Each step waits until every agent
 * reports the step's datastore revision enforced.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test"
import { until } from "./cluster.ts"
import { observe } from "./hostns.ts"
import { farPodsAndPolicies, makePolicyWorld, namespaceObject, podObject, type PolicyWorld } from "./policy-cluster.ts"

let world: PolicyWorld

beforeAll(async () => {
  world = await makePolicyWorld()
}, 300_000)

afterEach(async () => {
  await world.clearPolicies()
})

afterAll(async () => {
  await world?.remove()
})

type Spec = Record<string, unknown>
const policy = (name: string, namespace: string, spec: Spec) => ({ metadata: { name, namespace }, spec })
const podIs = (name: string) => ({ matchLabels: { pod: name } })
const nsIs = (name: string) => ({ matchLabels: { ns: name } })
const ipOf = (key: string) => world.pods.find((pod) => pod.key === key)!.ip

/** Applies `policies` and compares every probe with the oracle. */
const expectTruthTable = async (policies: ReadonlyArray<ReturnType<typeof policy>> = []) => {
  for (const p of policies) await world.apply(p)
  expect(await world.mismatches()).toEqual([])
}

describe("NetworkPolicy truth tables (3 nodes, 9 pods, TCP+UDP on 80 and 81)", () => {
  test("no policy: every pod reaches every pod", () => expectTruthTable())

  test("default deny ingress in x", () => expectTruthTable([policy("deny-ingress", "x", { podSelector: {} })]))

  test("default deny ingress and egress in x", () => expectTruthTable([policy("deny-all", "x", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })]))

  test("allow to x/a from pods of its namespace by podSelector", () =>
    expectTruthTable([policy("allow-b", "x", { podSelector: podIs("a"), ingress: [{ from: [{ podSelector: podIs("b") }] }] })]))

  test("allow to x/a from all namespaces", () => expectTruthTable([policy("allow-all-ns", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: {} }] }] })]))

  test("allow to x/a only from namespace y by namespaceSelector", () =>
    expectTruthTable([policy("allow-y", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: nsIs("y") }] }] })]))

  test("podSelector with matchExpressions (In)", () =>
    expectTruthTable([policy("pod-in", "x", { podSelector: podIs("a"), ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["b"] }] } }] }] })]))

  test("namespaceSelector with matchExpressions (NotIn)", () =>
    expectTruthTable([policy("ns-notin", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: "ns", operator: "NotIn", values: ["x"] }] } }] }] })]))

  test("podSelector OR namespaceSelector (two peers)", () =>
    expectTruthTable([policy("or", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: nsIs("y") }, { podSelector: podIs("b") }] }] })]))

  test("podSelector AND namespaceSelector (one peer)", () =>
    expectTruthTable([
      policy("and", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: "ns", operator: "NotIn", values: ["x"] }] }, podSelector: podIs("b") }] }] })
    ]))

  test("multiple selectors: pods b or c of namespaces y or z, Exists and DoesNotExist", () =>
    expectTruthTable([
      policy("multi", "x", {
        podSelector: { matchExpressions: [{ key: "pod", operator: "Exists" }, { key: "tier", operator: "DoesNotExist" }] },
        ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: "ns", operator: "In", values: ["y", "z"] }] }, podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["b", "c"] }] } }] }]
      })
    ]))

  test("ports: only TCP 81 admitted to x/a", () => expectTruthTable([policy("port-81", "x", { podSelector: podIs("a"), ingress: [{ ports: [{ port: 81, protocol: "TCP" }] }] })]))

  test("named ports on ingress: serve-80-tcp (and serve-81-udp over UDP)", () =>
    expectTruthTable([
      policy("named", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: "serve-80-tcp" }, { port: "serve-81-udp", protocol: "UDP" }] }] })
    ]))

  test("named ports on egress: x/a may only reach serve-81-udp over UDP (resolved at each destination)", () =>
    expectTruthTable([policy("named-egress", "x", { podSelector: podIs("a"), policyTypes: ["Egress"], egress: [{ ports: [{ port: "serve-81-udp", protocol: "UDP" }] }] })]))

  test("a named port with the wrong protocol matches nothing", () =>
    expectTruthTable([policy("named-mismatch", "x", { podSelector: podIs("a"), ingress: [{ ports: [{ port: "serve-80-udp", protocol: "TCP" }] }] })]))

  test("endPort: TCP 80 to 81 from y, UDP 81 to 81 from z", () =>
    expectTruthTable([
      policy("range", "x", {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: nsIs("y") }], ports: [{ port: 80, endPort: 81 }] }, { from: [{ namespaceSelector: nsIs("z") }], ports: [{ port: 81, endPort: 81, protocol: "UDP" }] }]
      })
    ]))

  test("stacked policies with overlapping selectors are additive", () =>
    expectTruthTable([
      policy("from-y-80", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: nsIs("y") }], ports: [{ port: 80 }] }] }),
      policy("from-b-81", "x", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {}, podSelector: podIs("b") }], ports: [{ port: 81 }, { port: 81, protocol: "UDP" }] }] })
    ]))

  test("allow-all takes precedence over deny-all", () =>
    expectTruthTable([policy("deny", "x", { podSelector: {} }), policy("allow-all", "x", { podSelector: {}, ingress: [{}] })]))

  test("an updated policy is enforced as updated", async () => {
    await expectTruthTable([policy("changing", "x", { podSelector: podIs("a"), ingress: [{ from: [{ podSelector: podIs("b") }] }] })])
    await expectTruthTable([policy("changing", "x", { podSelector: podIs("a"), ingress: [{ from: [{ podSelector: podIs("c") }] }] })])
  })

  test("updated pod labels: a pod that gains the label a policy admits is admitted, and loses it again", async () => {
    await expectTruthTable([policy("from-new", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { team: "new" } } }] }] })])
    await world.put("pods/y/b", podObject("y", "b", { pod: "b", team: "new" }))
    expect(await world.mismatches()).toEqual([])
    await world.put("pods/y/b", podObject("y", "b"))
    expect(await world.mismatches()).toEqual([])
  })

  test("updated namespace labels: a namespace that gains the label a policy admits is admitted, and loses it again", async () => {
    await expectTruthTable([policy("from-ns-new", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "new" } } }] }] })])
    await world.put("namespaces/z", namespaceObject("z", { ns: "z", team: "new" }))
    expect(await world.mismatches()).toEqual([])
    await world.put("namespaces/z", namespaceObject("z"))
    expect(await world.mismatches()).toEqual([])
  })

  test("deny egress of one pod by podSelector", () => expectTruthTable([policy("deny-egress-a", "x", { podSelector: podIs("a"), policyTypes: ["Egress"] })]))

  test("deny egress of a whole namespace", () => expectTruthTable([policy("deny-egress-y", "y", { podSelector: {}, policyTypes: ["Egress"] })]))

  test("ingress and egress together: x/a admits y and reaches only z", () =>
    expectTruthTable([
      policy("both", "x", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: nsIs("y") }] }], egress: [{ to: [{ namespaceSelector: nsIs("z") }] }] })
    ]))

  test("the client's egress deny wins although the server allows it", () =>
    expectTruthTable([
      policy("client-deny", "x", { podSelector: podIs("a"), policyTypes: ["Egress"] }),
      policy("server-allow", "y", { podSelector: podIs("a"), ingress: [{ from: [{ namespaceSelector: nsIs("x"), podSelector: podIs("a") }] }] })
    ]))

  test("ipBlock with except, and an IP in the except allowed by another policy", async () => {
    await expectTruthTable([policy("block", "x", { podSelector: podIs("a"), ingress: [{ from: [{ ipBlock: { cidr: "10.244.0.0/16", except: [`${ipOf("y/a")}/32`, `${ipOf("z/b")}/32`] } }] }] })])
    await expectTruthTable([policy("one-ip", "x", { podSelector: podIs("a"), ingress: [{ from: [{ ipBlock: { cidr: `${ipOf("y/a")}/32` } }] }] })])
  })

  test("egress to an ipBlock with except", () =>
    expectTruthTable([policy("egress-block", "y", { podSelector: podIs("b"), egress: [{ to: [{ ipBlock: { cidr: "10.244.0.0/16", except: [`${ipOf("x/c")}/32`] } }], ports: [{ port: 80 }] }] })]))

  test("SCTP only does not admit TCP or UDP", () => expectTruthTable([policy("sctp", "x", { podSelector: {}, ingress: [{ ports: [{ port: 80, protocol: "SCTP" }, { port: 81, protocol: "SCTP" }] }] })]))

  test("UDP only does not admit TCP", () => expectTruthTable([policy("udp", "x", { podSelector: {}, ingress: [{ ports: [{ port: 80, protocol: "UDP" }, { port: 81, protocol: "UDP" }] }] })]))

  test("a deleted policy stops being enforced", async () => {
    await expectTruthTable([policy("deny-z", "z", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })])
    await world.del("policies/z/deny-z")
    await expectTruthTable()
  })
})

/** The node's policy table as `nft -j` prints it (an independent reader), handles left out. */
const policyTable = (netns: string) => {
  const run = Bun.spawnSync(["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "inet", "tscni-policy"])
  const items = (JSON.parse(run.stdout.toString()) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables
  return items.filter((item) => !("metainfo" in item)).map((item) => JSON.stringify(item, (key, value) => (key === "handle" ? undefined : value)))
}
/** The verdict a dispatch map holds for `ip`, read with nft. */
const dispatchOf = (netns: string, map: string, ip: string): string | undefined => {
  const run = Bun.spawnSync(["ip", "netns", "exec", netns, "nft", "-j", "list", "map", "inet", "tscni-policy", map])
  const set = (JSON.parse(run.stdout.toString()) as { nftables: Array<{ map?: { elem?: Array<[unknown, Record<string, { target?: string }>]> } }> }).nftables.find((i) => i.map)?.map
  const element = set?.elem?.find(([key]) => JSON.stringify(key).includes(`"${ip}"`))
  return element === undefined ? undefined : Object.entries(element[1]).map(([verdict, arg]) => `${verdict} ${arg?.target ?? ""}`.trim())[0]
}

describe("enforcement over a pod's and an agent's life", () => {
  test("traffic from a pod's own node is always allowed (kubelet's probes), whatever isolates the pod", async () => {
    await world.apply(policy("deny-all", "x", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }))
    const target = world.pods.find((pod) => pod.key === "x/a")!
    const connect = Bun.spawnSync(["ip", "netns", "exec", target.node.netns, process.execPath, "-e", `
      const socket = await Bun.connect({ hostname: "${target.ip}", port: 80, socket: { data() {}, error() { process.exit(1) } } })
      socket.end()
      process.exit(0)`], { timeout: 10_000 })
    expect(connect.exitCode).toBe(0)
    // while a pod is refused
    expect(await world.prober.probe("y/a", [{ ip: target.ip, port: 80, protocol: "TCP" }])).toEqual([false])
  })

  test("a new pod a policy selects is isolated when its ADD returns: its dispatch is in the kernel then, and traffic agrees", async () => {
    await world.apply(policy("only-from-y", "x", { podSelector: podIs("d"), ingress: [{ from: [{ namespaceSelector: nsIs("y") }] }] }))
    const pod = await world.addPod("x", "d", 0)
    // read at once, with nft: nothing was waited for after the ADD returned
    expect(dispatchOf(pod.node.netns, "ingress4", pod.ip)).toMatch(/^jump in-[0-9a-f]+$/)
    // its server, so an allowed probe is answered
    await world.startProbers([pod])
    const from = (key: string) => world.prober.probe(key, [{ ip: pod.ip, port: 80, protocol: "TCP" }, { ip: pod.ip, port: 81, protocol: "UDP" }])
    expect(await from("y/b")).toEqual([true, true])
    expect(await from("x/a")).toEqual([false, false])
    expect(await from("z/c")).toEqual([false, false])
    pod.detach()
    expect(dispatchOf(pod.node.netns, "ingress4", pod.ip)).toBeUndefined()
    await world.del("pods/x/d")
  })

  test("a served ADD whose enforcement the kernel refuses is undone: code 11, and the node is as before", async () => {
    await world.apply(policy("only-e", "x", { podSelector: podIs("e"), ingress: [{ from: [{ namespaceSelector: nsIs("y") }] }] }))
    const node = world.cluster.nodes[0]!
    // the node as observe() sees it, its nftables tables in name order (a table made again lists last)
    const state = () => {
      const observed = JSON.parse(observe(node.netns)) as { nft: string }
      return { ...observed, nft: observed.nft.split(/\n(?=table )/).map((table) => table.trim()).sort() }
    }
    const before = state()
    // the agent's table deleted by hand: its next change is refused (the table is missing)
    expect(Bun.spawnSync(["ip", "netns", "exec", node.netns, "nft", "delete", "table", "inet", "tscni-policy"]).exitCode).toBe(0)
    const added = await world.addPod("x", "e", 0).then(() => "added", (error: unknown) => String(error))
    expect(added).toContain("could not be enforced")
    expect(added).toContain("the ADD was undone")
    expect(added).toContain(`"code":11`)
    // the undoing DEL's enforcement wrote the whole table again: the node is exactly as before
    expect(state()).toEqual(before)
    expect(world.cluster.etcd.etcdctl("get", "--prefix", "--keys-only", `${world.cluster.prefix}/endpoints/x/e`).trim()).toBe("")
    await world.del("pods/x/e")
  })

  test("an agent SIGKILLed and restarted never opens an allow window: a prober running throughout sees no denied connection pass", async () => {
    await world.apply(policy("deny", "x", { podSelector: {} }))
    const target = world.pods.find((pod) => pod.key === "x/a")!
    const node = target.node
    const index = world.cluster.nodes.indexOf(node)
    const before = policyTable(node.netns)
    let running = true
    const seen: Array<boolean> = []
    const probing = (async () => {
      while (running) seen.push(...(await world.prober.probe("y/b", [{ ip: target.ip, port: 80, protocol: "TCP" }, { ip: target.ip, port: 81, protocol: "UDP" }], 500)))
    })()
    try {
      const agent = world.agents[index]!
      process.kill(agent.pid, "SIGKILL")
      await agent.exited
      // probes while no agent runs: the kernel's table alone enforces
      const down = seen.length
      await until("probes while the agent is down", () => (seen.length >= down + 4 ? true : undefined))
      const restarted = world.cluster.startAgent(node)
      // the restart is done when it reports the datastore's latest revision enforced
      const latest = Number(JSON.parse(world.cluster.etcd.etcdctl("get", "-w", "json", `${world.cluster.prefix}/config`)).header.revision)
      await until("the restarted agent to enforce the datastore", () => {
        const match = /^tscni_policy_applied_revision (\d+)/m.exec(world.cluster.probe(node, "/metrics").body)
        return match !== null && Number(match[1]) >= latest ? true : undefined
      })
      // and a few probes after it, so the window around the table's replacement is covered
      const after = seen.length
      await until("probes after the restart", () => (seen.length >= after + 4 ? true : undefined))
      expect(restarted.log()).toContain("cluster: node")
      world.agents[index] = restarted
    } finally {
      running = false
      await probing
    }
    expect(seen.length).toBeGreaterThan(4)
    expect(seen.filter((passed) => passed)).toEqual([])
    // the restart changed nothing that was right
    expect(policyTable(node.netns)).toEqual(before)
  })
})

describe("at scale", () => {
  test("1,000 policies over 500 more pods (most of them only endpoint records) compile and apply, and the truth table still holds", async () => {
    // ten of the policies select x/a, from namespaces that never probe: x/a is isolated
    const many = farPodsAndPolicies({ namespaces: 50, podsPerNamespace: 10, policiesPerNamespace: 20, selectingXa: 10 })
    try {
      const ms = await world.putMany(many)
      console.log(`1000 policies over ${9 + 500} pods written and enforced on every node in ${Math.round(ms)} ms`)
      for (const node of world.cluster.nodes) {
        const metrics = world.cluster.probe(node, "/metrics").body
        expect(metrics).toMatch(/^tscni_policy_policies 1000$/m)
        expect(metrics).toMatch(/^tscni_policy_rejected_objects 0$/m)
      }
      const nodeOfA = world.pods.find((pod) => pod.key === "x/a")!.node
      expect(dispatchOf(nodeOfA.netns, "ingress4", ipOf("x/a"))).toMatch(/^jump in-/)
      expect(await world.mismatches()).toEqual([])
    } finally {
      for (const kind of ["policies/ns-", "policies/x/p-", "endpoints/ns-", "pods/ns-", "namespaces/ns-"]) await world.delPrefix(kind)
    }
    expect(await world.mismatches()).toEqual([])
  })
})
