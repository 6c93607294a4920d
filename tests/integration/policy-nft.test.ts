/**
 * Every shape of rule and set the policy rendering makes, accepted by the real kernel:
 * a dual-stack world (IPv4 and IPv6 pods, IPv6 ipBlocks with excepts, named ports over TCP,
 * UDP and SCTP, endPort ranges, egress and ingress) rendered for one node and written with
 * the Linux backend into a fresh namespace, then changed by a difference; what the kernel
 * holds afterwards is read back with `nft -j` and compared with the rendering.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { makeLinuxBackend } from "@tscni/backend-linux"
import { compile, type World } from "@tscni/policy/model"
import { diffRulesets, POLICY_TABLE, type PolicyRuleset, renderRuleset, tableOf } from "@tscni/policy/nft"
import { decodePolicy, implicitNamespace, type Pod } from "@tscni/policy/objects"
import { freshNetns } from "./harness.ts"

const netns = freshNetns()
afterAll(() => netns.remove())
const backend = makeLinuxBackend()

const pod = (namespace: string, name: string, ips: Array<string>, nodeName: string): Pod => ({
  namespace,
  name,
  labels: { pod: name },
  ports: [{ name: "web", port: 8080, protocol: "TCP" }, { name: "dns", port: 53, protocol: "UDP" }, { name: "sig", port: 2905, protocol: "SCTP" }],
  ips,
  nodeName
})

const PODS = [
  pod("x", "a", ["10.9.1.2", "fd09:1::2"], "here"),
  pod("x", "b", ["10.9.1.3", "fd09:1::3"], "here"),
  pod("y", "a", ["10.9.2.2", "fd09:2::2"], "there")
]

const world = (policies: ReadonlyArray<unknown>): World => ({
  namespaces: new Map([["x", implicitNamespace("x")], ["y", implicitNamespace("y", { team: "y" })]]),
  pods: new Map(PODS.map((p) => [`${p.namespace}/${p.name}`, p])),
  policies: new Map(policies.map((json) => Effect.runSync(decodePolicy(json))).map((p) => [`${p.namespace}/${p.name}`, p]))
})

const POLICIES = [
  { metadata: { name: "mixed", namespace: "x" }, spec: {
    podSelector: {},
    policyTypes: ["Ingress", "Egress"],
    ingress: [
      { from: [{ namespaceSelector: { matchLabels: { team: "y" } } }, { ipBlock: { cidr: "fd00::/16", except: ["fd00:1::/32"] } }], ports: [{ port: "web" }, { port: "dns", protocol: "UDP" }, { port: "sig", protocol: "SCTP" }, { port: 9000, endPort: 9100 }] },
      { from: [{ ipBlock: { cidr: "192.168.0.0/16", except: ["192.168.1.0/24"] } }] }
    ],
    egress: [{ to: [{ podSelector: { matchLabels: { pod: "b" } } }], ports: [{ protocol: "UDP" }, { port: 443, protocol: "SCTP" }] }]
  } },
  { metadata: { name: "only-a", namespace: "x" }, spec: { podSelector: { matchLabels: { pod: "a" } }, ingress: [{}] } }
]

/** The kernel's table as sets → sorted element texts and chains → rule counts, from `nft -j`. */
const kernelTable = () => {
  const run = Bun.spawnSync(["ip", "netns", "exec", netns.name, "nft", "-j", "list", "table", POLICY_TABLE.family, POLICY_TABLE.name])
  expect(run.exitCode).toBe(0)
  const items = (JSON.parse(run.stdout.toString()) as { nftables: Array<Record<string, { name?: string; chain?: string; elem?: Array<unknown> }>> }).nftables
  const sets = new Map<string, number>()
  const rules = new Map<string, number>()
  for (const item of items) {
    const set = item.set ?? item.map
    if (set?.name !== undefined) sets.set(set.name, set.elem?.length ?? 0)
    if (item.rule?.chain !== undefined) rules.set(item.rule.chain, (rules.get(item.rule.chain) ?? 0) + 1)
  }
  return { sets: Object.fromEntries([...sets].sort()), rules: Object.fromEntries([...rules].sort()) }
}

/** The same shape from the rendering. */
const renderedTable = (ruleset: PolicyRuleset) => ({
  sets: Object.fromEntries([...ruleset.sets].map(([name, set]) => [name, set.elements.size] as const).sort()),
  rules: Object.fromEntries([...ruleset.chains].filter(([, chain]) => chain.rules.length > 0).map(([name, chain]) => [name, chain.rules.length] as const).sort())
})

describe("the policy table on the real kernel", () => {
  test("every rule and set shape is accepted, as rendered; a difference to another world is applied in one transaction", async () => {
    const here = (p: Pod) => p.nodeName === "here"
    const first = renderRuleset(compile(world(POLICIES)), here)
    // the rendering uses every shape: IPv6 peers, named ports of both families, port ranges
    const rules = [...first.chains.values()].flatMap((chain) => chain.rules)
    expect(rules.some((rule) => rule.startsWith("ip6 saddr @"))).toBe(true)
    expect(rules.some((rule) => rule.includes("ip6 daddr . meta l4proto . th dport @n"))).toBe(true)
    expect([...first.sets.values()].some((set) => [...set.elements.keys()].includes("sctp . 2905") || [...set.elements.keys()].some((key) => key.endsWith(" . sctp . 2905")))).toBe(true)
    const { table, elements } = tableOf(first)
    await Effect.runPromise(backend.replaceNftTable(netns.path, table, elements))
    expect(kernelTable()).toEqual(renderedTable(first))
    // a policy goes: x/a now shares x/b's chain, "only-a"'s chain goes
    const second = renderRuleset(compile(world(POLICIES.slice(0, 1))), here)
    await Effect.runPromise(backend.changeNftTable(netns.path, POLICY_TABLE, diffRulesets(first, second)))
    expect(kernelTable()).toEqual(renderedTable(second))
  })
})
