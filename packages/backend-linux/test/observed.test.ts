/**
 * Every LinuxBackend operation, observed with the kernel's own tools (ip -j, tc -j,
 * nft -j) rather than through the backend: what we wrote is what the kernel holds.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { Effect } from "effect"
import type { BackendShape } from "@tscni/backend"
import { makeLinuxBackend } from "../src/index.ts"

if (process.getuid?.() !== 0) throw new Error("these tests need root")

const backend: BackendShape = makeLinuxBackend()
const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

const names = new Set<string>()
const fresh = async (): Promise<{ name: string; path: string }> => {
  const name = `tscni-ob-${process.pid}-${names.size}`
  names.add(name)
  return { name, path: await run(backend.createNetns(name)) }
}
afterAll(() => {
  for (const name of names) Bun.spawnSync(["ip", "netns", "delete", name])
})

const tool = (netns: string, argv: Array<string>): unknown => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, ...argv], { stdout: "pipe", stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${out.stderr.toString()}`)
  const text = out.stdout.toString().trim()
  return text === "" ? [] : JSON.parse(text)
}
type Json = Record<string, any>
const ipj = (netns: string, ...args: Array<string>) => tool(netns, ["ip", "-j", ...args]) as Array<Json>

describe("LinuxBackend seen by iproute2 / tc / nft", () => {
  test("createNetns is a namespace `ip netns` lists; deleteNetns removes it", async () => {
    const ns = await fresh()
    const listed = Bun.spawnSync(["ip", "-j", "netns", "list"]).stdout.toString()
    expect((JSON.parse(listed) as Array<Json>).map((n) => n.name)).toContain(ns.name)
    expect(ipj(ns.name, "link").map((l) => l.ifname)).toEqual(["lo"])
    await run(backend.deleteNetns(ns.path))
    expect(Bun.spawnSync(["ip", "netns", "list"]).stdout.toString()).not.toContain(ns.name)
  })

  test("a veth pair born across namespaces, with mtu and mac, up, on a bridge with hairpin", async () => {
    const host = await fresh()
    const pod = await fresh()
    await run(backend.createLink({ netns: host.path, name: "br-ob", kind: "bridge", mtu: 1450 }))
    await run(backend.createVeth({ netns: host.path, name: "veth-ob", peerNetns: pod.path, peerName: "eth0", mtu: 1450, peerMac: "0a:58:0a:09:00:02" }))
    await run(backend.setLink(host.path, "veth-ob", { master: "br-ob", up: true }))
    await run(backend.setLink(host.path, "veth-ob", { hairpin: true }))
    await run(backend.setLink(pod.path, "eth0", { up: true, txqlen: 2000, promisc: true, allmulti: true }))
    const [veth] = ipj(host.name, "-d", "link", "show", "veth-ob")
    expect(veth).toMatchObject({ mtu: 1450, master: "br-ob", linkinfo: { info_kind: "veth", info_slave_data: { hairpin: true } } })
    expect(veth!.flags).toContain("UP")
    const [eth0] = ipj(pod.name, "link", "show", "eth0")
    expect(eth0).toMatchObject({ mtu: 1450, address: "0a:58:0a:09:00:02", txqlen: 2000 })
    expect(eth0!.flags).toEqual(expect.arrayContaining(["UP", "PROMISC", "ALLMULTI"]))
    // the peer of the host end is the pod's eth0
    expect(veth!.link_index).toBe(eth0!.ifindex)
    await run(backend.setLink(host.path, "veth-ob", { master: null }))
    expect(ipj(host.name, "link", "show", "veth-ob")[0]!.master).toBeUndefined()
    await run(backend.deleteLink(pod.path, "eth0"))
    expect(ipj(host.name, "link").map((l) => l.ifname)).toEqual(["lo", "br-ob"])
  })

  test("moveLink moves and renames", async () => {
    const a = await fresh()
    const b = await fresh()
    await run(backend.createLink({ netns: a.path, name: "ifb-ob", kind: "ifb" }))
    await run(backend.moveLink(a.path, "ifb-ob", b.path, "ifb-moved"))
    expect(ipj(a.name, "link").map((l) => l.ifname)).toEqual(["lo"])
    expect(ipj(b.name, "link").map((l) => l.ifname)).toContain("ifb-moved")
  })

  test("addresses and routes, IPv4 and IPv6, with metric, table, mtu and advmss", async () => {
    const ns = await fresh()
    await run(backend.createVeth({ netns: ns.path, name: "v-ob", peerNetns: ns.path, peerName: "v-ob-peer" }))
    await run(backend.setLink(ns.path, "v-ob", { up: true }))
    await run(backend.setLink(ns.path, "v-ob-peer", { up: true }))
    await run(backend.addAddress(ns.path, "v-ob", "10.9.0.2/24"))
    await run(backend.addAddress(ns.path, "v-ob", "fd09::2/64"))
    const [addr] = ipj(ns.name, "addr", "show", "v-ob")
    const local = addr!.addr_info.map((a: Json) => `${a.local}/${a.prefixlen}`)
    expect(local).toEqual(expect.arrayContaining(["10.9.0.2/24", "fd09::2/64"]))
    expect(addr!.addr_info.find((a: Json) => a.local === "10.9.0.2").broadcast).toBe("10.9.0.255")

    await run(backend.addRoute(ns.path, { dst: "0.0.0.0/0", gateway: "10.9.0.1", link: "v-ob" }))
    await run(backend.addRoute(ns.path, { dst: "10.50.0.0/16", gateway: "10.9.0.1", priority: 30, mtu: 1400, advmss: 1360 }))
    await run(backend.addRoute(ns.path, { dst: "10.60.0.0/16", gateway: "10.9.0.1", table: 1000 }))
    await run(backend.addRoute(ns.path, { dst: "fd10::/64", gateway: "fd09::1", link: "v-ob" }))
    const routes = ipj(ns.name, "route", "show")
    expect(routes).toContainEqual(expect.objectContaining({ dst: "default", gateway: "10.9.0.1", dev: "v-ob" }))
    expect(routes).toContainEqual(expect.objectContaining({ dst: "10.50.0.0/16", metric: 30, metrics: [{ mtu: 1400, advmss: 1360 }] }))
    expect(ipj(ns.name, "route", "show", "table", "1000")).toContainEqual(expect.objectContaining({ dst: "10.60.0.0/16" }))
    expect(ipj(ns.name, "-6", "route", "show")).toContainEqual(expect.objectContaining({ dst: "fd10::/64", gateway: "fd09::1" }))

    await run(backend.deleteRoute(ns.path, { dst: "10.50.0.0/16", gateway: "10.9.0.1", priority: 30 }))
    await run(backend.deleteRoute(ns.path, { dst: "10.60.0.0/16", gateway: "10.9.0.1", table: 1000 }))
    expect(ipj(ns.name, "route", "show").map((r) => r.dst)).not.toContain("10.50.0.0/16")
    expect(ipj(ns.name, "route", "show", "table", "1000")).toEqual([])
    await run(backend.deleteAddress(ns.path, "v-ob", "10.9.0.2/24"))
    expect(ipj(ns.name, "-4", "addr", "show", "v-ob")[0]?.addr_info ?? []).toEqual([])
  })

  test("noDad: an IPv6 address is usable at once, not tentative", async () => {
    const ns = await fresh()
    await run(backend.createVeth({ netns: ns.path, name: "v-dad", peerNetns: ns.path, peerName: "v-dad-peer" }))
    await run(backend.setLink(ns.path, "v-dad", { up: true }))
    await run(backend.setLink(ns.path, "v-dad-peer", { up: true }))
    await run(backend.addAddress(ns.path, "v-dad", "fd77::1/64", { noDad: true }))
    await run(backend.addAddress(ns.path, "v-dad", "fd78::1/64"))
    const info = ipj(ns.name, "-6", "addr", "show", "v-dad")[0]!.addr_info as Array<Json>
    const byAddress = new Map(info.map((a) => [a.local, a]))
    expect(byAddress.get("fd77::1")?.tentative).toBeUndefined()
    expect(byAddress.get("fd78::1")?.tentative).toBe(true)
  })

  test("deleteConntrack forgets exactly the flows of one protocol and port, as conntrack -L shows", async () => {
    const ns = await fresh()
    await run(backend.setLink(ns.path, "lo", { up: true }))
    // a rule that needs connection tracking makes the namespace track flows
    tool(ns.name, ["nft", "add table inet ct-ob; add chain inet ct-ob in { type filter hook input priority 0 ; }; add rule inet ct-ob in ct state new accept"])
    const send = (port: number) => Bun.spawnSync(["ip", "netns", "exec", ns.name, "bash", "-c", `echo x > /dev/udp/127.0.0.1/${port}`])
    send(5353)
    send(5354)
    const flows = (port: number) =>
      Bun.spawnSync(["ip", "netns", "exec", ns.name, "conntrack", "-L", "-p", "udp", "--dport", String(port)], { stderr: "pipe" })
        .stdout.toString().split("\n").filter((line) => line.includes("udp")).length
    expect([flows(5353), flows(5354)]).toEqual([1, 1])
    expect(await run(backend.deleteConntrack(ns.path, { family: 4, protocol: "udp", dstPort: 5353 }))).toBe(1)
    expect([flows(5353), flows(5354)]).toEqual([0, 1])
    expect(await run(backend.deleteConntrack(ns.path, { family: 4, protocol: "tcp", dstPort: 5354 }))).toBe(0)
  })

  test("append: a second default route through another link coexists (IPv6 as multipath), each listed and deleted alone", async () => {
    const ns = await fresh()
    for (const [name, v4, v6] of [["ap0", "10.31.0.2/24", "fd31::2/64"], ["ap1", "10.32.0.2/24", "fd32::2/64"]] as const) {
      await run(backend.createVeth({ netns: ns.path, name, peerNetns: ns.path, peerName: `${name}p` }))
      await run(backend.setLink(ns.path, name, { up: true }))
      await run(backend.setLink(ns.path, `${name}p`, { up: true }))
      await run(backend.addAddress(ns.path, name, v4))
      await run(backend.addAddress(ns.path, name, v6, { noDad: true }))
    }
    await run(backend.addRoute(ns.path, { dst: "0.0.0.0/0", gateway: "10.31.0.1", link: "ap0" }, { append: true }))
    await run(backend.addRoute(ns.path, { dst: "0.0.0.0/0", gateway: "10.32.0.1", link: "ap1" }, { append: true }))
    await run(backend.addRoute(ns.path, { dst: "::/0", gateway: "fd31::1", link: "ap0" }, { append: true }))
    await run(backend.addRoute(ns.path, { dst: "::/0", gateway: "fd32::1", link: "ap1" }, { append: true }))
    const identical = await Effect.runPromise(Effect.flip(backend.addRoute(ns.path, { dst: "0.0.0.0/0", gateway: "10.31.0.1", link: "ap0" }, { append: true })))
    expect(identical.reason).toBe("AlreadyExists")
    const defaults = (await run(backend.listRoutes(ns.path))).filter((r) => r.dst === "0.0.0.0/0" || r.dst === "::/0")
    expect(defaults.map((r) => `${r.gateway} ${r.link}`).sort()).toEqual(["10.31.0.1 ap0", "10.32.0.1 ap1", "fd31::1 ap0", "fd32::1 ap1"])
    // iproute2 agrees
    const v6 = ipj(ns.name, "-6", "route", "show", "default")
    expect(JSON.stringify(v6)).toContain("fd32::1")
    await run(backend.deleteRoute(ns.path, { dst: "0.0.0.0/0", gateway: "10.31.0.1", link: "ap0" }))
    await run(backend.deleteRoute(ns.path, { dst: "::/0", gateway: "fd31::1", link: "ap0" }))
    const left = (await run(backend.listRoutes(ns.path))).filter((r) => r.dst === "0.0.0.0/0" || r.dst === "::/0")
    expect(left.map((r) => `${r.gateway} ${r.link}`).sort()).toEqual(["10.32.0.1 ap1", "fd32::1 ap1"])
  })

  test("sysctls are per namespace and return the previous value", async () => {
    const ns = await fresh()
    const previous = await run(backend.writeSysctl(ns.path, "net.ipv4.ip_forward", "1"))
    const read = Bun.spawnSync(["ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.toString().trim()
    expect(read).toBe("1")
    expect(await run(backend.writeSysctl(ns.path, "net.ipv4.ip_forward", previous))).toBe("1")
  })

  test("tbf, ingress and the mirred redirect, as tc shows them", async () => {
    const ns = await fresh()
    await run(backend.createVeth({ netns: ns.path, name: "v-tc", peerNetns: ns.path, peerName: "v-tc-peer" }))
    await run(backend.createLink({ netns: ns.path, name: "ifb-tc", kind: "ifb" }))
    await run(backend.addQdisc(ns.path, { link: "v-tc", kind: "tbf", parent: "root", tbf: { rate: 8_000_000, burst: 80_000, limit: 35_000 } }))
    await run(backend.addQdisc(ns.path, { link: "v-tc", kind: "ingress", parent: "ingress" }))
    await run(backend.addRedirect(ns.path, { link: "v-tc", toLink: "ifb-tc" }))
    const qdiscs = tool(ns.name, ["tc", "-j", "qdisc", "show", "dev", "v-tc"]) as Array<Json>
    const tbf = qdiscs.find((q) => q.kind === "tbf")!
    expect(tbf.options.rate).toBe(1_000_000) // bytes per second
    expect(tbf.options.burst).toBe(10_000) // bytes
    expect(qdiscs.map((q) => q.kind)).toContain("ingress")
    const filters = tool(ns.name, ["tc", "-j", "filter", "show", "dev", "v-tc", "ingress"]) as Array<Json>
    const redirect = filters.flatMap((f) => f.options?.actions ?? [])
    expect(redirect).toContainEqual(expect.objectContaining({ kind: "mirred", mirred_action: "redirect", to_dev: "ifb-tc" }))
    await run(backend.deleteRedirect(ns.path, { link: "v-tc", toLink: "ifb-tc" }))
    expect(tool(ns.name, ["tc", "-j", "filter", "show", "dev", "v-tc", "ingress"])).toEqual([])
    await run(backend.deleteQdisc(ns.path, "v-tc", "root"))
    await run(backend.deleteQdisc(ns.path, "v-tc", "ingress"))
    const left = tool(ns.name, ["tc", "-j", "qdisc", "show", "dev", "v-tc"]) as Array<Json>
    expect(left.filter((q) => q.kind === "tbf" || q.kind === "ingress")).toEqual([])
  })

  test("nftables rules: one owner's rules added and removed, the ruleset left as it was", async () => {
    const ns = await fresh()
    const nat = { type: "nat", hook: "postrouting", priority: 100 } as const
    await run(backend.addFilterRules(ns.path, [
      { family: "ip", table: "tscni-ob", chain: "post", rule: "ip saddr 10.9.0.2 masquerade", comment: "owner-1", baseChain: nat },
      { family: "ip", table: "tscni-ob", chain: "post", rule: "ip saddr 10.9.0.3 masquerade", comment: "owner-2", baseChain: nat }
    ]))
    const listed = tool(ns.name, ["nft", "-j", "list", "ruleset"]) as Json
    const rules = (listed.nftables as Array<Json>).filter((entry) => entry.rule).map((entry) => entry.rule)
    expect(rules.map((rule) => rule.comment)).toEqual(["owner-1", "owner-2"])
    const chain = (listed.nftables as Array<Json>).find((entry) => entry.chain)!.chain
    expect(chain).toMatchObject({ table: "tscni-ob", type: "nat", hook: "postrouting", prio: 100 })
    await run(backend.deleteFilterRules(ns.path, { family: "ip", name: "tscni-ob" }, "owner-1"))
    const after = (tool(ns.name, ["nft", "-j", "list", "ruleset"]) as Json).nftables as Array<Json>
    expect(after.filter((entry) => entry.rule).map((entry) => entry.rule.comment)).toEqual(["owner-2"])
    await run(backend.deleteFilterRules(ns.path, { family: "ip", name: "tscni-ob" }, "owner-2"))
    const empty = (tool(ns.name, ["nft", "-j", "list", "ruleset"]) as Json).nftables as Array<Json>
    expect(empty.filter((entry) => entry.table || entry.chain || entry.rule)).toEqual([])
  })

  test("an alias set on create, changed and cleared, as `ip -d link` shows it", async () => {
    const ns = await fresh()
    await run(backend.createLink({ netns: ns.path, name: "br-alias", kind: "bridge", alias: "tscni:net-ob" }))
    expect(ipj(ns.name, "-d", "link", "show", "br-alias")[0]!.ifalias).toBe("tscni:net-ob")
    await run(backend.setLink(ns.path, "br-alias", { alias: "tscni:other" }))
    expect(ipj(ns.name, "link", "show", "br-alias")[0]!.ifalias).toBe("tscni:other")
    await run(backend.setLink(ns.path, "br-alias", { alias: "" }))
    expect(ipj(ns.name, "link", "show", "br-alias")[0]!.ifalias).toBeUndefined()
    // set by hand, read by the backend
    tool(ns.name, ["ip", "link", "set", "br-alias", "alias", "by hand"])
    expect((await run(backend.getLink(ns.path, "br-alias"))).alias).toBe("by hand")
  })

  test("bridge VLAN filtering and port VLANs as `ip -d link` and `bridge vlan` show them (or Unsupported, leaving nothing)", async () => {
    const ns = await fresh()
    const created = await run(Effect.result(backend.createLink({ netns: ns.path, name: "br-vlan", kind: "bridge", vlanFiltering: true })))
    const supported = created._tag === "Success"
    if (created._tag === "Failure") {
      expect(created.failure).toMatchObject({ reason: "Unsupported", errno: "EOPNOTSUPP" })
      expect(created.failure.message).toContain("VLAN filtering is not supported")
      expect(ipj(ns.name, "link").map((l) => l.ifname)).toEqual(["lo"])
      await run(backend.createLink({ netns: ns.path, name: "br-vlan", kind: "bridge" }))
    }
    const [bridge] = ipj(ns.name, "-d", "link", "show", "br-vlan")
    expect(bridge!.linkinfo.info_data.vlan_filtering).toBe(supported ? 1 : 0)
    await run(backend.createVeth({ netns: ns.path, name: "veth-vlan", peerNetns: ns.path, peerName: "veth-vlan-p" }))
    await run(backend.setLink(ns.path, "veth-vlan", { master: "br-vlan" }))
    const added = await run(Effect.result(backend.addBridgeVlan(ns.path, "veth-vlan", { vid: 10, pvid: true, untagged: true })))
    if (!supported) {
      expect(added._tag === "Failure" && added.failure.reason).toBe("Unsupported")
      expect(tool(ns.name, ["bridge", "-j", "vlan", "show"])).toEqual([])
      return
    }
    const vlans = (tool(ns.name, ["bridge", "-j", "vlan", "show", "dev", "veth-vlan"]) as Array<Json>)[0]!.vlans as Array<Json>
    expect(vlans).toContainEqual({ vlan: 10, flags: ["PVID", "Egress Untagged"] })
    // added by hand, read by the backend
    tool(ns.name, ["bridge", "vlan", "add", "dev", "veth-vlan", "vid", "20"])
    expect(await run(backend.listBridgeVlans(ns.path, "veth-vlan"))).toContainEqual({ vid: 20, pvid: false, untagged: false })
    await run(backend.deleteBridgeVlan(ns.path, "veth-vlan", 10))
    const after = (tool(ns.name, ["bridge", "-j", "vlan", "show", "dev", "veth-vlan"]) as Array<Json>)[0]!.vlans as Array<Json>
    expect(after.map((v) => v.vlan)).not.toContain(10)
  })

  test("route protocols as `ip route` shows them: connected routes kernel, ours boot", async () => {
    const ns = await fresh()
    await run(backend.createVeth({ netns: ns.path, name: "v-proto", peerNetns: ns.path, peerName: "v-proto-p" }))
    await run(backend.setLink(ns.path, "v-proto", { up: true }))
    await run(backend.setLink(ns.path, "v-proto-p", { up: true }))
    await run(backend.addAddress(ns.path, "v-proto", "10.9.7.2/24"))
    await run(backend.addRoute(ns.path, { dst: "10.70.0.0/16", gateway: "10.9.7.1" }))
    tool(ns.name, ["ip", "route", "add", "10.71.0.0/16", "via", "10.9.7.1", "proto", "static"])
    tool(ns.name, ["ip", "route", "add", "10.72.0.0/16", "via", "10.9.7.1", "proto", "186"])
    const seen = ipj(ns.name, "route", "show")
    expect(seen).toContainEqual(expect.objectContaining({ dst: "10.9.7.0/24", protocol: "kernel" }))
    expect(seen.find((r) => r.dst === "10.70.0.0/16")!.protocol).toBeUndefined() // iproute2 leaves boot out too
    const listed = await run(backend.listRoutes(ns.path))
    const protocolOf = (dst: string) => listed.find((r) => r.dst === dst)?.protocol
    expect([protocolOf("10.9.7.0/24"), protocolOf("10.70.0.0/16"), protocolOf("10.71.0.0/16"), protocolOf("10.72.0.0/16")]).toEqual([
      "kernel",
      undefined,
      "static",
      186
    ])
  })

  test("bridge and netdev nftables chains as `nft -j` shows them", async () => {
    const ns = await fresh()
    await run(backend.createVeth({ netns: ns.path, name: "veth1234", peerNetns: ns.path, peerName: "veth1234p" }))
    await run(backend.addFilterRules(ns.path, [
      {
        family: "bridge",
        table: "tscni-mac",
        chain: "prerouting",
        rule: 'iifname "veth1234" ether saddr != 0a:58:0a:01:00:02 drop',
        comment: "owner-1",
        baseChain: { type: "filter", hook: "prerouting", priority: -300 }
      },
      {
        family: "netdev",
        table: "tscni-nd",
        chain: "ingress",
        rule: "ether saddr 0a:58:0a:01:00:09 drop",
        comment: "owner-1",
        baseChain: { type: "filter", hook: "ingress", priority: 0, device: "veth1234" }
      }
    ]))
    const entries = (tool(ns.name, ["nft", "-j", "list", "ruleset"]) as Json).nftables as Array<Json>
    const chains = entries.filter((entry) => entry.chain).map((entry) => entry.chain)
    expect(chains).toContainEqual(expect.objectContaining({ family: "bridge", table: "tscni-mac", type: "filter", hook: "prerouting", prio: -300 }))
    const ingress = chains.find((chain) => chain.family === "netdev")!
    expect(ingress).toMatchObject({ table: "tscni-nd", hook: "ingress", prio: 0 })
    // nft 1.0.6's JSON leaves a netdev chain's device out; its text listing has it
    const text = Bun.spawnSync(["ip", "netns", "exec", ns.name, "nft", "list", "chain", "netdev", "tscni-nd", "ingress"])
    expect(text.stdout.toString()).toContain('hook ingress device "veth1234"')
    const rules = entries.filter((entry) => entry.rule).map((entry) => entry.rule)
    expect(rules.map((rule) => [rule.family, rule.comment])).toEqual([["bridge", "owner-1"], ["netdev", "owner-1"]])
    await run(backend.deleteFilterRules(ns.path, { family: "bridge", name: "tscni-mac" }, "owner-1"))
    await run(backend.deleteFilterRules(ns.path, { family: "netdev", name: "tscni-nd" }, "owner-1"))
    const empty = (tool(ns.name, ["nft", "-j", "list", "ruleset"]) as Json).nftables as Array<Json>
    expect(empty.filter((entry) => entry.table || entry.chain || entry.rule)).toEqual([])
  })
})

describe("LinuxBackend iptables seen by iptables-save", () => {
  /** `iptables-save -t TABLE` in the namespace without the timestamp comments and counters. */
  const saved = (netns: string, table: string, family: 4 | 6 = 4): string => {
    const tool = family === 4 ? "iptables-save" : "ip6tables-save"
    const out = Bun.spawnSync(["ip", "netns", "exec", netns, tool, "-t", table], { stdout: "pipe", stderr: "pipe" })
    if (out.exitCode !== 0) throw new Error(`${tool}: ${out.stderr.toString()}`)
    return out.stdout.toString().split("\n").filter((line) => !line.startsWith("#")).map((line) => line.replace(/ \[\d+:\d+\]$/, "")).join("\n")
  }
  const by = (netns: string, ...argv: Array<string>) => {
    const out = Bun.spawnSync(["ip", "netns", "exec", netns, ...argv], { stdout: "pipe", stderr: "pipe" })
    if (out.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${out.stderr.toString()}`)
  }
  const local = ["-m", "addrtype", "--dst-type", "LOCAL"]
  const portmapLike = (comment: string, address: string, port: number) => ({
    family: 4 as const,
    table: "nat" as const,
    chains: [
      { name: "TSCNI-OB-DNAT", jumpFrom: [{ chain: "PREROUTING" as const, position: "append" as const, match: local }, { chain: "OUTPUT" as const, position: "append" as const, match: local }] },
      { name: "TSCNI-OB-MASQ", jumpFrom: [{ chain: "POSTROUTING" as const, position: "insert" as const }] }
    ],
    rules: [
      { chain: "TSCNI-OB-DNAT", args: ["-p", "tcp", "--dport", String(port), "-s", "127.0.0.1", "-j", "MARK", "--set-xmark", "0x2000/0x2000"], position: "insert" as const },
      { chain: "TSCNI-OB-DNAT", args: ["-p", "tcp", "--dport", String(port), "-j", "DNAT", "--to-destination", `${address}:80`], position: "insert" as const },
      { chain: "TSCNI-OB-MASQ", args: ["-d", address, "-m", "mark", "--mark", "0x2000/0x2000", "-j", "MASQUERADE"] }
    ],
    comment
  })

  test("one owner's rules and chains as iptables-save shows them; others' rules untouched; the table back as it was", async () => {
    const ns = await fresh()
    by(ns.name, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "MASQUERADE")
    const before = saved(ns.name, "nat")
    await run(backend.addIptablesRules(ns.path, portmapLike("pm:ob:1", "10.9.0.2", 8080)))
    await run(backend.addIptablesRules(ns.path, portmapLike("pm:ob:2", "10.9.0.3", 8081)))
    const text = saved(ns.name, "nat")
    expect(text).toContain(":TSCNI-OB-DNAT -")
    expect(text).toContain("-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment tscni -j TSCNI-OB-DNAT")
    expect(text).toContain("-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment tscni -j TSCNI-OB-DNAT")
    // the jump into MASQ was inserted: before the rule that was there
    expect(text).toContain("-A POSTROUTING -m comment --comment tscni -j TSCNI-OB-MASQ\n-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE")
    // the second owner's DNAT rules were inserted above the first's, in their own order
    const dnat = text.split("\n").filter((line) => line.startsWith("-A TSCNI-OB-DNAT"))
    expect(dnat).toEqual([
      "-A TSCNI-OB-DNAT -s 127.0.0.1/32 -p tcp -m comment --comment \"pm:ob:2\" -m tcp --dport 8081 -j MARK --set-xmark 0x2000/0x2000",
      "-A TSCNI-OB-DNAT -p tcp -m comment --comment \"pm:ob:2\" -m tcp --dport 8081 -j DNAT --to-destination 10.9.0.3:80",
      "-A TSCNI-OB-DNAT -s 127.0.0.1/32 -p tcp -m comment --comment \"pm:ob:1\" -m tcp --dport 8080 -j MARK --set-xmark 0x2000/0x2000",
      "-A TSCNI-OB-DNAT -p tcp -m comment --comment \"pm:ob:1\" -m tcp --dport 8080 -j DNAT --to-destination 10.9.0.2:80"
    ])
    expect(text.split("\n").filter((line) => line.includes("-j TSCNI-OB-"))).toHaveLength(3)
    await run(backend.deleteIptablesRules(ns.path, { family: 4, table: "nat", comment: "pm:ob:1" }))
    expect(saved(ns.name, "nat")).not.toContain("pm:ob:1")
    expect(saved(ns.name, "nat")).toContain("pm:ob:2")
    await run(backend.deleteIptablesRules(ns.path, { family: 4, table: "nat", comment: "pm:ob:2" }))
    expect(saved(ns.name, "nat")).toBe(before)
  })

  test("ip6tables: an IPv6 masquerade in its own chain, and back", async () => {
    const ns = await fresh()
    const before = saved(ns.name, "nat", 6)
    await run(backend.addIptablesRules(ns.path, {
      family: 6,
      table: "nat",
      chains: [{ name: "TSCNI-OB-MASQ6", jumpFrom: [{ chain: "POSTROUTING", position: "append" }] }],
      rules: [
        { chain: "TSCNI-OB-MASQ6", args: ["-s", "fd09::2/128", "-d", "fd09::/64", "-j", "RETURN"] },
        { chain: "TSCNI-OB-MASQ6", args: ["-s", "fd09::2/128", "!", "-d", "ff00::/8", "-j", "MASQUERADE"] }
      ],
      comment: "br:ob:1"
    }))
    const text = saved(ns.name, "nat", 6)
    expect(text).toContain("-A TSCNI-OB-MASQ6 -s fd09::2/128 ! -d ff00::/8 -m comment --comment \"br:ob:1\" -j MASQUERADE")
    expect(saved(ns.name, "nat", 4)).not.toContain("TSCNI-OB-MASQ6")
    await run(backend.deleteIptablesRules(ns.path, { family: 6, table: "nat", comment: "br:ob:1" }))
    expect(saved(ns.name, "nat", 6)).toBe(before)
  })

  test("concurrent writers to the same new chains: every owner's rules, one jump each; concurrent deletes leave nothing", async () => {
    const ns = await fresh()
    const before = saved(ns.name, "nat")
    const owners = Array.from({ length: 8 }, (_, i) => i)
    await Promise.all(owners.map((i) => run(backend.addIptablesRules(ns.path, portmapLike(`pm:par:${i}`, `10.9.1.${i + 2}`, 9000 + i)))))
    const listing = await run(backend.listIptablesRules(ns.path, { family: 4, table: "nat" }))
    expect(new Set(listing.rules.map((r) => r.comment))).toEqual(new Set(["tscni", ...owners.map((i) => `pm:par:${i}`)]))
    expect(listing.rules.filter((r) => r.comment === "tscni")).toHaveLength(3)
    await Promise.all(owners.map((i) => run(backend.deleteIptablesRules(ns.path, { family: 4, table: "nat", comment: `pm:par:${i}` }))))
    expect(saved(ns.name, "nat")).toBe(before)
  })

  test("a jump into a chain that does not exist: NotFound naming it, and nothing changed", async () => {
    const ns = await fresh()
    const before = saved(ns.name, "nat")
    const outcome = await run(Effect.result(backend.addIptablesRules(ns.path, {
      family: 4,
      table: "nat",
      chains: [{ name: "TSCNI-OB-X", jumpFrom: [{ chain: "PREROUTING", position: "append" }] }],
      rules: [{ chain: "TSCNI-OB-X", args: ["-j", "KUBE-MARK-MASQ"] }],
      comment: "pm:ob:3"
    })))
    expect(outcome._tag === "Failure" && outcome.failure.reason).toBe("NotFound")
    expect(outcome._tag === "Failure" && outcome.failure.message).toContain("KUBE-MARK-MASQ")
    expect(saved(ns.name, "nat")).toBe(before)
  })
})
