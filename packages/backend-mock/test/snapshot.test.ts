import { HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { fresh, ok, reason } from "./helpers.ts"

describe("snapshots and diffs", () => {
  test("diff is [] for equal snapshots", () => {
    const { control } = fresh()
    expect(control.diff(control.snapshot(), control.snapshot())).toEqual([])
  })

  test("a snapshot is plain JSON data and never changes afterwards", () => {
    const { backend, control } = fresh()
    const before = control.snapshot()
    expect(JSON.parse(JSON.stringify(before))).toEqual(before)
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    expect(before.namespaces[HOST_NETNS]?.links.map((l) => l.name)).toEqual(["lo"])
  })

  test("create then delete leaves the snapshot equal (counters are not part of it)", () => {
    const { backend, control } = fresh()
    const ns = ok(backend.createNetns("a"))
    const before = control.snapshot()
    ok(backend.createVeth({ netns: HOST_NETNS, name: "veth0", peerNetns: ns, peerName: "eth0" }))
    ok(backend.setLink(HOST_NETNS, "veth0", { up: true }))
    ok(backend.addAddress(HOST_NETNS, "veth0", "10.1.0.1/24"))
    ok(backend.addQdisc(HOST_NETNS, { link: "veth0", kind: "ingress", parent: "ingress" }))
    ok(backend.deleteLink(ns, "eth0"))
    expect(control.diff(before, control.snapshot())).toEqual([])
    expect(control.snapshot()).toEqual(before)
  })

  test("moving a link away and back restores the snapshot", () => {
    const { backend, control } = fresh()
    const ns = ok(backend.createNetns("a"))
    ok(backend.createVeth({ netns: HOST_NETNS, name: "veth0", peerNetns: HOST_NETNS, peerName: "tmp0" }))
    const before = control.snapshot()
    ok(backend.moveLink(HOST_NETNS, "tmp0", ns, "eth0"))
    expect(control.diff(before, control.snapshot()).length).toBeGreaterThan(0)
    ok(backend.moveLink(ns, "eth0", HOST_NETNS, "tmp0"))
    expect(control.diff(before, control.snapshot())).toEqual([])
  })

  test("diff names every kind of difference", () => {
    const { backend, control } = fresh()
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    const before = control.snapshot()
    const ns = ok(backend.createNetns("a"))
    ok(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))
    ok(backend.setLink(HOST_NETNS, "d0", { up: true, mtu: 1400 }))
    ok(backend.addAddress(HOST_NETNS, "d0", "10.1.0.1/24"))
    ok(backend.addRoute(HOST_NETNS, { dst: "0.0.0.0/0", gateway: "10.1.0.254" }))
    ok(backend.writeSysctl(HOST_NETNS, "net.ipv4.ip_forward", "1"))
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "tbf", parent: "root", tbf: { rate: 1000, burst: 100, limit: 100 } }))
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "clsact", parent: "ingress" }))
    ok(backend.addRedirect(HOST_NETNS, { link: "d0", toLink: "br0" }))
    ok(backend.addFilterRules(HOST_NETNS, [{ family: "ip", table: "tscni", chain: "nat", rule: "masquerade", comment: "c1" }]))
    const lines = control.diff(before, control.snapshot())
    const has = (fragment: string) => expect(lines.some((line) => line.includes(fragment))).toBe(true)
    has(`+ netns ${ns}`)
    has(`${ns}: + link lo`)
    has("host: + link br0 (bridge")
    has("host: ~ link d0 mtu: 1500 → 1400")
    has("host: ~ link d0 up: false → true")
    has("host: + address d0 10.1.0.1/24")
    has("host: + route 10.1.0.0/24 dev d0 scope link src 10.1.0.1")
    has("host: + route 0.0.0.0/0 via 10.1.0.254 dev d0 scope universe")
    has("host: ~ sysctl net.ipv4.ip_forward: 0 → 1")
    has("host: + sysctl net.ipv4.conf.br0.arp_notify = 0")
    has('host: + qdisc {"link":"d0","kind":"tbf"')
    has('host: + qdisc {"link":"d0","kind":"clsact"')
    has("host: + redirect d0 → br0")
    has('host: + filter rule ip tscni nat "masquerade" comment "c1"')
    // and the other way round
    const back = control.diff(control.snapshot(), before)
    expect(back).toContain(`- netns ${ns}`)
    expect(back.some((line) => line.startsWith("host: - link br0"))).toBe(true)
    expect(back.some((line) => line.startsWith("host: - sysctl net.ipv4.conf.br0.arp_notify"))).toBe(true)
  })

  test("diff reports a reordering of otherwise equal filter rules", () => {
    const { backend, control } = fresh()
    const rule = (comment: string) => ({ family: "ip" as const, table: "t", chain: "c", rule: "accept", comment })
    ok(backend.addFilterRules(HOST_NETNS, [rule("a"), rule("b")]))
    const before = control.snapshot()
    ok(backend.deleteFilterRules(HOST_NETNS, { family: "ip", name: "t" }, "a"))
    ok(backend.addFilterRules(HOST_NETNS, [rule("a")]))
    expect(control.diff(before, control.snapshot())).toEqual(["host: ~ filter rules: same rules, different order"])
  })

  test("duplicate filter rules count in the diff", () => {
    const { backend, control } = fresh()
    const rule = { family: "ip" as const, table: "t", chain: "c", rule: "accept", comment: "a" }
    ok(backend.addFilterRules(HOST_NETNS, [rule]))
    const before = control.snapshot()
    ok(backend.addFilterRules(HOST_NETNS, [rule]))
    expect(control.diff(before, control.snapshot())).toEqual(['host: + filter rule ip t c "accept" comment "a"'])
  })

  test("iptables chains and rules show in diffs; a table left with its empty built-in chains reads as none", () => {
    const { backend, control } = fresh()
    const before = control.snapshot()
    const batch = (comment: string, address: string) => ({
      family: 4 as const,
      table: "nat" as const,
      chains: [{ name: "TSCNI-T", jumpFrom: [{ chain: "POSTROUTING" as const, position: "append" as const }] }],
      rules: [{ chain: "TSCNI-T", args: ["-s", address, "-j", "MASQUERADE"] }],
      comment
    })
    ok(backend.addIptablesRules(HOST_NETNS, batch("a", "10.1.0.2/32")))
    expect(control.diff(before, control.snapshot())).toEqual([
      "host: + iptables chain 4 nat TSCNI-T",
      'host: + iptables rule 4 nat POSTROUTING "-j TSCNI-T" comment "tscni"',
      'host: + iptables rule 4 nat TSCNI-T "-s 10.1.0.2/32 -j MASQUERADE" comment "a"'
    ])
    const one = control.snapshot()
    ok(backend.addIptablesRules(HOST_NETNS, batch("b", "10.1.0.3/32")))
    expect(control.diff(one, control.snapshot())).toEqual(['host: + iptables rule 4 nat TSCNI-T "-s 10.1.0.3/32 -j MASQUERADE" comment "b"'])
    ok(backend.deleteIptablesRules(HOST_NETNS, { family: 4, table: "nat", comment: "a" }))
    ok(backend.addIptablesRules(HOST_NETNS, batch("a", "10.1.0.2/32")))
    expect(control.diff(one, control.snapshot())).toEqual([
      'host: + iptables rule 4 nat TSCNI-T "-s 10.1.0.3/32 -j MASQUERADE" comment "b"'
    ])
    ok(backend.deleteIptablesRules(HOST_NETNS, { family: 4, table: "nat", comment: "b" }))
    expect(control.diff(one, control.snapshot())).toEqual([])
    ok(backend.deleteIptablesRules(HOST_NETNS, { family: 4, table: "nat", comment: "a" }))
    expect(control.diff(before, control.snapshot())).toEqual([])
    expect(control.snapshot()).toEqual(before)
  })

  test("iptables: a failed batch (fault or invalid) changes nothing", () => {
    const { backend, control } = fresh()
    const before = control.snapshot()
    const batch = {
      family: 6 as const,
      table: "nat" as const,
      chains: [{ name: "TSCNI-T", jumpFrom: [{ chain: "POSTROUTING" as const, position: "insert" as const }] }],
      rules: [{ chain: "TSCNI-T", args: ["-j", "MASQUERADE"] }, { chain: "TSCNI-T", args: ["-j", "TSCNI-MISSING"] }],
      comment: "a"
    }
    expect(reason(backend.addIptablesRules(HOST_NETNS, batch))).toBe("NotFound")
    control.failNth(1)
    expect(reason(backend.addIptablesRules(HOST_NETNS, { ...batch, rules: [batch.rules[0]!] }))).toBe("Injected")
    expect(control.diff(before, control.snapshot())).toEqual([])
  })
})
