import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { HOST_NETNS } from "@tscni/backend"
import { makeMockBackend } from "@tscni/backend-mock"
import { compile, type World } from "../src/model.ts"
import { diffRulesets, isEmptyChange, POLICY_TABLE, type PolicyRuleset, renderRuleset, tableOf } from "../src/nft.ts"
import type { Pod } from "../src/objects.ts"
import { subtract, toCidrs } from "../src/ranges.ts"
import { pod, PODS, worldOf } from "./fixtures.ts"

const np = (name: string, namespace: string, spec: Record<string, unknown>) => ({ metadata: { name, namespace }, spec })
const onNode1 = (p: Pod) => p.nodeName === "node1"
const render = (world: World) => renderRuleset(compile(world), onNode1)

describe("address ranges as nft interval elements", () => {
  test("a block minus its excepts is the fewest prefixes covering exactly the rest", () => {
    const block = { from: 0x0a000000n, to: 0x0a0000ffn } // 10.0.0.0/24
    expect(toCidrs(4, subtract([block], [{ from: 0x0a000080n, to: 0x0a0000ffn }]))).toEqual(["10.0.0.0/25"])
    expect(toCidrs(4, subtract([block], [{ from: 0x0a000001n, to: 0x0a000001n }]))).toEqual([
      "10.0.0.0", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.8/29", "10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26", "10.0.0.128/25"
    ])
    expect(toCidrs(4, [{ from: 0n, to: 0xffffffffn }])).toEqual(["0.0.0.0/0"])
    expect(toCidrs(6, [{ from: 1n, to: 1n }])).toEqual(["::1"])
  })
})

describe("rendering the node's policy table", () => {
  test("no policy: the dispatch maps are empty, so no packet is judged", () => {
    const ruleset = render(worldOf([]))
    expect([...ruleset.chains.keys()]).toEqual(["forward"])
    expect([...ruleset.sets.values()].every((set) => set.elements.size === 0)).toBe(true)
  })

  test("default deny: this node's selected pods dispatch to one shared chain that only refuses; other nodes' pods are not here", () => {
    const ruleset = render(worldOf([np("deny", "x", { podSelector: {} }), np("deny", "y", { podSelector: {} })]))
    const ingress = ruleset.sets.get("ingress4")!.elements
    expect([...ingress.keys()].sort()).toEqual(["10.0.1.1", "10.0.2.1"])
    const chain = ingress.get("10.0.1.1")!.replace("jump ", "")
    expect(ingress.get("10.0.2.1")).toBe(`jump ${chain}`)
    expect(ruleset.chains.get(chain)!.rules).toEqual(["meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"])
    expect(ruleset.sets.get("egress4")!.elements.size).toBe(0)
  })

  test("a rule becomes a return per address family and port clause, looking up its own sets", () => {
    const world = worldOf([np("p", "x", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }, { ipBlock: { cidr: "fd00::/64" } }], ports: [{ port: 80 }, { port: 90, endPort: 99, protocol: "UDP" }, { port: "serve-81-udp", protocol: "UDP" }] }]
    })])
    const ruleset = render(world)
    const chain = ruleset.chains.get(ruleset.sets.get("ingress4")!.elements.get("10.0.1.1")!.replace("jump ", ""))!
    const base = chain.rules[0]!.match(/@(r[0-9a-f]+)a4/)![1]!
    const named = [...ruleset.sets.keys()].find((name) => name.startsWith("n"))!
    expect(chain.rules).toEqual([
      `ip saddr @${base}a4 meta l4proto . th dport @${base}p return`,
      `ip saddr @${base}a4 ip daddr . meta l4proto . th dport @${named} return`,
      `ip6 saddr @${base}a6 meta l4proto . th dport @${base}p return`,
      "meta l4proto tcp reject with tcp reset",
      "reject with icmpx admin-prohibited"
    ])
    expect([...ruleset.sets.get(`${base}a4`)!.elements.keys()]).toEqual(["10.0.2.1", "10.0.2.2"])
    expect([...ruleset.sets.get(`${base}a6`)!.elements.keys()]).toEqual(["fd00::/64"])
    expect([...ruleset.sets.get(`${base}p`)!.elements.keys()]).toEqual(["tcp . 80", "udp . 90-99"])
    // every pod declaring the name, on any node: a destination's named port is known cluster-wide
    expect([...ruleset.sets.get(named)!.elements.keys()].sort()).toEqual(["10.0.1.1 . udp . 81", "10.0.1.2 . udp . 81", "10.0.2.1 . udp . 81", "10.0.2.2 . udp . 81"])
  })

  test("a rule whose peers match nothing, or whose named port no pod declares, admits nothing", () => {
    const ruleset = render(worldOf([np("p", "x", { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { pod: "zzz" } } }] }, { ports: [{ port: "nope" }] }] })]))
    const chain = ruleset.chains.get(ruleset.sets.get("ingress4")!.elements.get("10.0.1.1")!.replace("jump ", ""))!
    expect(chain.rules).toEqual(["meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"])
  })

  test("egress returns to the forward chain, so the destination's ingress is still judged after it", () => {
    const ruleset = render(worldOf([np("eg", "x", { podSelector: {}, egress: [{ to: [{ podSelector: {} }] }] })]))
    expect(ruleset.chains.get("forward")!.rules).toEqual(["ct state established,related accept", "ip saddr vmap @egress4", "ip6 saddr vmap @egress6", "ip daddr vmap @ingress4", "ip6 daddr vmap @ingress6"])
    const chain = ruleset.chains.get(ruleset.sets.get("egress4")!.elements.get("10.0.1.1")!.replace("jump ", ""))!
    expect(chain.rules[0]).toMatch(/^ip daddr @r[0-9a-f]+a4 return$/)
  })
})

/** The mock kernel's policy table, as sets with elements and chains with rules. */
const kernelTable = (snapshot: ReturnType<ReturnType<typeof makeMockBackend>["control"]["snapshot"]>) => {
  const table = snapshot.namespaces[HOST_NETNS]!.nftTables.find((t) => t.name === POLICY_TABLE.name)!
  return {
    sets: table.sets.map((s) => s.name).sort(),
    chains: table.chains.map((c) => `${c.name}: ${c.rules.join("; ")}`).sort(),
    elements: table.elements.map((e) => `${e.set} ${e.key}${e.value === undefined ? "" : ` : ${e.value}`}`).sort()
  }
}
const wantedTable = (ruleset: PolicyRuleset) => {
  const { table, elements } = tableOf(ruleset)
  return {
    sets: table.sets.map((s) => s.name).sort(),
    chains: table.chains.map((c) => `${c.name}: ${c.rules.join("; ")}`).sort(),
    elements: elements.map((e) => `${e.set} ${e.key}${e.value === undefined ? "" : ` : ${e.value}`}`).sort()
  }
}

describe("applying differences (mock kernel)", () => {
  const policies = [
    np("deny", "x", { podSelector: {} }),
    np("from-y", "x", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 80 }] }] }),
    np("eg", "y", { podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.0.1.0/24"] } }] }] })
  ]
  const steps: ReadonlyArray<readonly [string, World]> = [
    ["no policies", worldOf([])],
    ["default deny", worldOf(policies.slice(0, 1))],
    ["an allow on top", worldOf(policies.slice(0, 2))],
    ["egress in y", worldOf(policies)],
    ["a pod's label changes", worldOf(policies, PODS.map((p) => (p.name === "a" && p.namespace === "x" ? { ...p, labels: { pod: "b" } } : p)))],
    ["a new pod on this node", worldOf(policies, [...PODS, pod("y", "c", "10.0.2.3")])],
    ["a policy deleted", worldOf(policies.slice(1), [...PODS, pod("y", "c", "10.0.2.3")])],
    ["everything deleted", worldOf([])]
  ]

  test("each step's difference, applied to the previous table, gives exactly the step's table", async () => {
    const { backend, control } = makeMockBackend()
    let applied = render(steps[0]![1])
    const first = tableOf(applied)
    await Effect.runPromise(backend.replaceNftTable(HOST_NETNS, first.table, first.elements))
    for (const [what, world] of steps.slice(1)) {
      const wanted = render(world)
      await Effect.runPromise(backend.changeNftTable(HOST_NETNS, POLICY_TABLE, diffRulesets(applied, wanted)))
      expect({ what, table: kernelTable(control.snapshot()) }).toEqual({ what, table: wantedTable(wanted) })
      applied = wanted
    }
  })

  test("a label change is element changes only, and an unchanged world is no change at all", () => {
    const before = render(steps[3]![1])
    const after = render(steps[4]![1])
    const changes = diffRulesets(before, after)
    expect(changes.addChains).toEqual([])
    expect(changes.addSets).toEqual([])
    expect(changes.addElements.length + changes.deleteElements.length).toBeGreaterThan(0)
    expect(isEmptyChange(diffRulesets(after, render(steps[4]![1])))).toBe(true)
  })
})
