import { HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { fresh, ok, reason } from "./helpers.ts"

const tbf = { rate: 1_000_000, burst: 10_000, limit: 20_000 }

const setup = () => {
  const kernel = fresh()
  ok(kernel.backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
  ok(kernel.backend.createLink({ netns: HOST_NETNS, name: "ifb0", kind: "ifb" }))
  return kernel
}

describe("qdiscs", () => {
  test("one root and one ingress/clsact per link, listed with handles", () => {
    const { backend } = setup()
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "tbf", parent: "root", tbf }))
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "clsact", parent: "ingress" }))
    expect(reason(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "tbf", parent: "root", tbf }))).toBe("AlreadyExists")
    expect(reason(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "ingress", parent: "ingress" }))).toBe("AlreadyExists")
    expect(ok(backend.listQdiscs(HOST_NETNS, "d0"))).toEqual([
      { link: "d0", kind: "tbf", parent: "root", handle: "1:", tbf },
      { link: "d0", kind: "clsact", parent: "ingress", handle: "ffff:" }
    ])
    expect(ok(backend.listQdiscs(HOST_NETNS, "ifb0"))).toEqual([])
  })

  test("kind and parent must fit; tbf needs positive options; the link must exist", () => {
    const { backend } = setup()
    expect(reason(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "tbf", parent: "ingress", tbf }))).toBe("Invalid")
    expect(reason(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "tbf", parent: "root" }))).toBe("Invalid")
    expect(reason(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "tbf", parent: "root", tbf: { ...tbf, rate: 0 } }))).toBe("Invalid")
    expect(reason(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "ingress", parent: "root" }))).toBe("Invalid")
    expect(reason(backend.addQdisc(HOST_NETNS, { link: "nope", kind: "ingress", parent: "ingress" }))).toBe("NotFound")
    expect(reason(backend.deleteQdisc(HOST_NETNS, "d0", "root"))).toBe("NotFound")
    expect(reason(backend.deleteQdisc(HOST_NETNS, "nope", "root"))).toBe("NotFound")
  })

  test("deleting the ingress qdisc takes its redirects; deleting the root one does not", () => {
    const { backend } = setup()
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "tbf", parent: "root", tbf }))
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "ingress", parent: "ingress" }))
    ok(backend.addRedirect(HOST_NETNS, { link: "d0", toLink: "ifb0" }))
    ok(backend.deleteQdisc(HOST_NETNS, "d0", "root"))
    expect(ok(backend.listRedirects(HOST_NETNS))).toHaveLength(1)
    ok(backend.deleteQdisc(HOST_NETNS, "d0", "ingress"))
    expect(ok(backend.listRedirects(HOST_NETNS))).toEqual([])
  })
})

describe("redirects", () => {
  test("need both links and an ingress qdisc on the source; duplicates AlreadyExists", () => {
    const { backend } = setup()
    expect(reason(backend.addRedirect(HOST_NETNS, { link: "d0", toLink: "ifb0" }))).toBe("Invalid")
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "ingress", parent: "ingress" }))
    expect(reason(backend.addRedirect(HOST_NETNS, { link: "d0", toLink: "nope" }))).toBe("NotFound")
    expect(reason(backend.addRedirect(HOST_NETNS, { link: "nope", toLink: "ifb0" }))).toBe("NotFound")
    ok(backend.addRedirect(HOST_NETNS, { link: "d0", toLink: "ifb0" }))
    expect(reason(backend.addRedirect(HOST_NETNS, { link: "d0", toLink: "ifb0" }))).toBe("AlreadyExists")
    expect(reason(backend.deleteRedirect(HOST_NETNS, { link: "d0", toLink: "lo" }))).toBe("NotFound")
  })

  test("go with either of their links, as qdiscs go with theirs", () => {
    const { backend, control } = setup()
    const before = control.snapshot()
    ok(backend.createLink({ netns: HOST_NETNS, name: "ifb1", kind: "ifb" }))
    ok(backend.addQdisc(HOST_NETNS, { link: "d0", kind: "ingress", parent: "ingress" }))
    ok(backend.addQdisc(HOST_NETNS, { link: "ifb1", kind: "tbf", parent: "root", tbf }))
    ok(backend.addRedirect(HOST_NETNS, { link: "d0", toLink: "ifb1" }))
    ok(backend.deleteLink(HOST_NETNS, "ifb1"))
    expect(ok(backend.listRedirects(HOST_NETNS))).toEqual([])
    ok(backend.deleteQdisc(HOST_NETNS, "d0", "ingress"))
    expect(control.diff(before, control.snapshot())).toEqual([])
  })
})

describe("sysctls", () => {
  test("only integers are accepted and they are stored normalised", () => {
    const { backend } = fresh()
    expect(reason(backend.writeSysctl(HOST_NETNS, "net.ipv4.ip_forward", "yes"))).toBe("Invalid")
    expect(ok(backend.writeSysctl(HOST_NETNS, "net.ipv4.ip_forward", " 1\n"))).toBe("0")
    expect(ok(backend.readSysctl(HOST_NETNS, "net.ipv4.ip_forward"))).toBe("1")
  })

  test("per-link keys follow the link; a new link starts from the defaults", () => {
    const { backend } = fresh()
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    expect(
      ["net.ipv4.conf.d0.route_localnet", "net.ipv4.conf.d0.arp_notify", "net.ipv6.conf.d0.accept_dad", "net.ipv6.conf.d0.disable_ipv6"].map(
        (key) => ok(backend.readSysctl(HOST_NETNS, key))
      )
    ).toEqual(["0", "0", "1", "0"])
    ok(backend.writeSysctl(HOST_NETNS, "net.ipv4.conf.d0.arp_notify", "1"))
    ok(backend.deleteLink(HOST_NETNS, "d0"))
    expect(reason(backend.writeSysctl(HOST_NETNS, "net.ipv4.conf.d0.arp_notify", "1"))).toBe("NotFound")
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    expect(ok(backend.readSysctl(HOST_NETNS, "net.ipv4.conf.d0.arp_notify"))).toBe("0")
  })

  test("namespaces have their own values", () => {
    const { backend } = fresh()
    const ns = ok(backend.createNetns("a"))
    ok(backend.writeSysctl(ns, "net.ipv4.ip_forward", "1"))
    expect(ok(backend.readSysctl(HOST_NETNS, "net.ipv4.ip_forward"))).toBe("0")
  })
})

describe("filter rules", () => {
  const rule = (comment: string, table = "tscni") => ({ family: "inet" as const, table, chain: "fwd", rule: "accept", comment })

  test("addFilterRules is all or nothing", () => {
    const { backend, control } = fresh()
    const before = control.snapshot()
    expect(reason(backend.addFilterRules(HOST_NETNS, [rule("a"), { ...rule("b"), chain: " " }]))).toBe("Invalid")
    expect(reason(backend.addFilterRules(HOST_NETNS, [rule("a"), { ...rule("b"), comment: "" }]))).toBe("Invalid")
    expect(control.diff(before, control.snapshot())).toEqual([])
  })

  test("duplicates are kept; delete removes every rule of table+comment, nothing to remove is fine", () => {
    const { backend } = fresh()
    ok(backend.addFilterRules(HOST_NETNS, [rule("a"), rule("a"), rule("b"), rule("a", "other")]))
    const tscni = { family: "inet", name: "tscni" } as const
    const other = { family: "inet", name: "other" } as const
    expect(ok(backend.listFilterRules(HOST_NETNS, tscni))).toHaveLength(3)
    expect(ok(backend.listFilterRules(HOST_NETNS, other))).toEqual([rule("a", "other")])
    expect(ok(backend.listFilterRules(HOST_NETNS, { ...tscni, family: "ip" }))).toEqual([])
    ok(backend.deleteFilterRules(HOST_NETNS, tscni, "a"))
    expect(ok(backend.listFilterRules(HOST_NETNS, tscni))).toEqual([rule("b")])
    expect(ok(backend.listFilterRules(HOST_NETNS, other))).toEqual([rule("a", "other")])
    ok(backend.deleteFilterRules(HOST_NETNS, tscni, "a"))
    ok(backend.deleteFilterRules(HOST_NETNS, { family: "inet", name: "nope" }, "nope"))
  })
})
