/**
 * observe() is what every "the host is as before" assertion rests on: each property it
 * claims to watch, changed by hand, must change the snapshot, and putting it back must
 * give the same snapshot again. What the kernel changes by itself must not show.
 */
import { describe, expect, test } from "bun:test"
import { freshNetns, ip } from "./harness.ts"
import { observe, settle } from "./hostns.ts"

const tc = (netns: string, ...args: Array<string>) => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "tc", ...args], { stdout: "pipe", stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`tc ${args.join(" ")}: ${out.stderr.toString()}`)
}

/** The top-level sections of two snapshots that differ. */
const changed = (a: string, b: string): Array<string> => {
  const [x, y] = [JSON.parse(a), JSON.parse(b)] as Array<Record<string, unknown>>
  return Object.keys(x!).filter((key) => JSON.stringify(x![key]) !== JSON.stringify(y![key]))
}

describe("observe()", () => {
  test("sees MTU, txqlen, MAC, promisc, bridge port options and tc filters, and each put back gives the same snapshot", () => {
    const ns = freshNetns()
    const n = ns.name
    ip("-n", n, "link", "add", "obr0", "type", "bridge")
    ip("-n", n, "link", "add", "ov0", "type", "veth", "peer", "name", "ov1")
    ip("-n", n, "link", "set", "ov0", "master", "obr0")
    for (const link of ["obr0", "ov0", "ov1"]) ip("-n", n, "link", "set", link, "up")
    tc(n, "qdisc", "add", "dev", "ov0", "ingress")
    tc(n, "qdisc", "add", "dev", "ov1", "clsact")
    // links just brought up get link-local addresses (and their routes) by themselves
    settle(n)
    const base = observe(n)
    const mac = (JSON.parse(ip("-j", "-n", n, "link", "show", "ov1")) as Array<{ address: string }>)[0]!.address
    const cases: Array<[string, () => void, () => void, Array<string>]> = [
      ["mtu", () => ip("-n", n, "link", "set", "ov1", "mtu", "1400"), () => ip("-n", n, "link", "set", "ov1", "mtu", "1500"), ["links"]],
      ["txqlen", () => ip("-n", n, "link", "set", "ov1", "txqlen", "500"), () => ip("-n", n, "link", "set", "ov1", "txqlen", "1000"), ["links"]],
      ["mac", () => ip("-n", n, "link", "set", "ov1", "address", "0a:58:00:00:00:01"), () => ip("-n", n, "link", "set", "ov1", "address", mac), ["links"]],
      ["promisc", () => ip("-n", n, "link", "set", "obr0", "promisc", "on"), () => ip("-n", n, "link", "set", "obr0", "promisc", "off"), ["links"]],
      ["hairpin", () => Bun.spawnSync(["ip", "netns", "exec", n, "bridge", "link", "set", "dev", "ov0", "hairpin", "on"]), () => Bun.spawnSync(["ip", "netns", "exec", n, "bridge", "link", "set", "dev", "ov0", "hairpin", "off"]), ["links"]],
      ["isolated", () => ip("-n", n, "link", "set", "ov0", "type", "bridge_slave", "isolated", "on"), () => ip("-n", n, "link", "set", "ov0", "type", "bridge_slave", "isolated", "off"), ["links"]],
      [
        "a filter under an ingress qdisc that stays",
        () => tc(n, "filter", "add", "dev", "ov0", "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ov1"),
        () => tc(n, "filter", "del", "dev", "ov0", "parent", "ffff:"),
        ["filters"]
      ],
      [
        "a filter on clsact's egress hook",
        () => tc(n, "filter", "add", "dev", "ov1", "egress", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ov0"),
        () => tc(n, "filter", "del", "dev", "ov1", "egress"),
        ["filters"]
      ]
    ]
    for (const [what, change, restore, sections] of cases) {
      change()
      expect({ what, changed: changed(base, observe(n)) }).toEqual({ what, changed: sections })
      restore()
      expect({ what, restored: observe(n) }).toEqual({ what, restored: base })
    }
    // a bridge whose MAC nobody set follows its ports: a port leaving and coming back is no change…
    ip("-n", n, "link", "set", "ov0", "nomaster")
    ip("-n", n, "link", "set", "ov0", "master", "obr0")
    expect(observe(n)).toBe(base)
    // …but a MAC set on it is state, and shows
    ip("-n", n, "link", "set", "obr0", "address", "0a:58:00:00:00:02")
    expect(changed(base, observe(n))).toEqual(["links"])
    ns.remove()
  })
})
