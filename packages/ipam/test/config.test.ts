import { describe, expect, test } from "bun:test"
import { Effect, Exit } from "effect"
import { formatCidr, formatIp } from "@tscni/ip"
import type { PluginRequest } from "@tscni/skel"
import { type CniError, decodeNetConf, type NetConf } from "@tscni/spec"
import { DEFAULT_DATA_DIR, loadHostLocalConfig, requestedTexts, resolveRequested } from "../src/index.ts"

const netconf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): NetConf =>
  Effect.runSync(decodeNetConf({ cniVersion: "1.0.0", name: "net", type: "bridge", ipam: { type: "host-local", ...ipam }, ...extra }))

const load = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  Effect.runSync(loadHostLocalConfig(netconf(ipam, extra)))

const failure = <A>(effect: Effect.Effect<A, CniError>): CniError => {
  const exit = Effect.runSyncExit(effect)
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got ${JSON.stringify(exit.value)}`)
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (error === undefined || error._tag !== "Fail") throw new Error("expected a typed failure")
  return error.error
}

const loadError = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  failure(loadHostLocalConfig(netconf(ipam, extra)))

const describeRanges = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  load(ipam, extra).rangeSets.map((set) =>
    set.ranges.map((range) =>
      `${formatCidr(range.subnet)} ${formatIp(range.rangeStart)}-${formatIp(range.rangeEnd)} gw ${formatIp(range.gateway)}`
    )
  )

describe("host-local config defaults", () => {
  test("IPv4: start network+1, end broadcast-1, gateway network+1", () => {
    expect(describeRanges({ ranges: [[{ subnet: "10.0.0.0/24" }]] })).toEqual([[
      "10.0.0.0/24 10.0.0.1-10.0.0.254 gw 10.0.0.1"
    ]])
  })

  test("IPv6: end is the last address", () => {
    expect(describeRanges({ ranges: [[{ subnet: "fd00:1::/120" }]] })).toEqual([[
      "fd00:1::/120 fd00:1::1-fd00:1::ff gw fd00:1::1"
    ]])
  })

  test("explicit bounds and gateway are kept; empty strings count as absent", () => {
    expect(describeRanges({
      ranges: [[{ subnet: "10.0.0.0/24", rangeStart: "10.0.0.10", rangeEnd: "10.0.0.20", gateway: "10.0.0.254" }], [{
        subnet: "10.1.0.0/24",
        gateway: ""
      }]]
    })).toEqual([["10.0.0.0/24 10.0.0.10-10.0.0.20 gw 10.0.0.254"], ["10.1.0.0/24 10.1.0.1-10.1.0.254 gw 10.1.0.1"]])
  })

  test("legacy top-level keys become the set before `ranges`; runtime ipRanges come first", () => {
    const config = load(
      { subnet: "10.2.0.0/16", rangeStart: "10.2.1.0", ranges: [[{ subnet: "fd00::/64" }]] },
      { runtimeConfig: { ipRanges: [[{ subnet: "192.168.5.0/24" }]] } }
    )
    expect(config.rangeSets.map((set) => [set.index, set.field, set.family])).toEqual([
      [0, "runtimeConfig.ipRanges[0]", 4],
      [1, "ipam", 4],
      [2, "ipam.ranges[0]", 6]
    ])
    expect(formatIp(config.rangeSets[1]!.ranges[0]!.rangeStart)).toBe("10.2.1.0")
  })

  test("runtime ipRanges as containerd sends them (Go field names: Subnet, RangeStart, …) read as the conventions' spelling", () => {
    const goNamed = load({}, { runtimeConfig: { ipRanges: [[{ Subnet: "192.168.5.0/24", RangeStart: "192.168.5.10", RangeEnd: "192.168.5.20", Gateway: "192.168.5.1" }]] } })
    const spelled = load({}, { runtimeConfig: { ipRanges: [[{ subnet: "192.168.5.0/24", rangeStart: "192.168.5.10", rangeEnd: "192.168.5.20", gateway: "192.168.5.1" }]] } })
    expect(goNamed.rangeSets).toEqual(spelled.rangeSets)
    expect(formatIp(goNamed.rangeSets[0]!.ranges[0]!.rangeStart)).toBe("192.168.5.10")
  })

  test("dataDir, resolvConf and routes", () => {
    const plain = load({ subnet: "10.0.0.0/24" })
    expect([plain.dataDir, plain.resolvConf, plain.routes]).toEqual([DEFAULT_DATA_DIR, undefined, []])
    const full = load({
      subnet: "10.0.0.0/24",
      dataDir: "/run/x",
      resolvConf: "/etc/r",
      routes: [{ dst: "0.0.0.0/0" }, { dst: "fd00::/8", gw: "fd00::1" }]
    })
    expect([full.dataDir, full.resolvConf, full.routes]).toEqual([
      "/run/x",
      "/etc/r",
      [{ dst: "0.0.0.0/0" }, { dst: "fd00::/8", gw: "fd00::1" }]
    ])
  })
})

describe("host-local config errors name the field (code 7)", () => {
  const cases: Array<[string, Record<string, unknown>, string, Record<string, unknown>?]> = [
    ["no ipam ranges", {}, "ipam.ranges: no IP ranges specified"],
    ["subnet not a CIDR", { ranges: [[{ subnet: "10.0.0.0/24" }, { subnet: "nope" }]] }, `ipam.ranges[0][1].subnet: not a CIDR: "nope"`],
    ["legacy subnet not a CIDR", { subnet: "10.0.0.1" }, `ipam.subnet: not a CIDR: "10.0.0.1"`],
    ["host bits", { ranges: [[{ subnet: "10.0.0.5/24" }]] }, "ipam.ranges[0][0].subnet: 10.0.0.5/24 has host bits set (the network is 10.0.0.0/24)"],
    ["too small", { ranges: [[{ subnet: "10.0.0.0/31" }]] }, "ipam.ranges[0][0].subnet: 10.0.0.0/31 is too small to allocate from"],
    ["rangeStart outside", { ranges: [[{ subnet: "10.0.0.0/24", rangeStart: "10.0.1.5" }]] }, "ipam.ranges[0][0].rangeStart: 10.0.1.5 is outside subnet 10.0.0.0/24"],
    ["rangeEnd not an IP", { ranges: [[{ subnet: "10.0.0.0/24", rangeEnd: "x" }]] }, `ipam.ranges[0][0].rangeEnd: not an IP address: "x"`],
    ["rangeStart network address", { subnet: "10.0.0.0/24", rangeStart: "10.0.0.0" }, "ipam.rangeStart: 10.0.0.0 is the network address of 10.0.0.0/24"],
    ["rangeEnd broadcast", { subnet: "10.0.0.0/24", rangeEnd: "10.0.0.255" }, "ipam.rangeEnd: 10.0.0.255 is the broadcast address of 10.0.0.0/24"],
    ["start after end", { subnet: "10.0.0.0/24", rangeStart: "10.0.0.50", rangeEnd: "10.0.0.40" }, "ipam.rangeStart: 10.0.0.50 is after rangeEnd 10.0.0.40"],
    ["gateway outside", { ranges: [[{ subnet: "10.0.0.0/24", gateway: "10.9.0.1" }]] }, "ipam.ranges[0][0].gateway: 10.9.0.1 is outside subnet 10.0.0.0/24"],
    ["gateway wrong family", { ranges: [[{ subnet: "10.0.0.0/24", gateway: "fd00::1" }]] }, "ipam.ranges[0][0].gateway: fd00::1 is not IPv4 like subnet 10.0.0.0/24"],
    ["mixed families", { ranges: [[{ subnet: "10.0.0.0/24" }, { subnet: "fd00::/64" }]] }, "ipam.ranges[0][1].subnet: mixed address families in one range set (IPv6 after IPv4)"],
    ["empty set", { ranges: [[{ subnet: "10.0.0.0/24" }], []] }, "ipam.ranges[1]: empty range set"],
    ["overlap in a set", {
      ranges: [[{ subnet: "10.0.0.0/24", rangeEnd: "10.0.0.100" }, { subnet: "10.0.0.0/24", rangeStart: "10.0.0.50" }]]
    }, "ipam.ranges[0][1]: 10.0.0.50-10.0.0.254 overlaps ipam.ranges[0][0] (10.0.0.1-10.0.0.100)"],
    ["overlap across sets", { subnet: "10.0.0.0/16", ranges: [[{ subnet: "10.0.3.0/24" }]] }, "ipam.ranges[0][0]: 10.0.3.1-10.0.3.254 overlaps ipam (10.0.0.1-10.0.255.254) of another range set"],
    ["rangeStart without subnet", { rangeStart: "10.0.0.5", ranges: [[{ subnet: "10.0.0.0/24" }]] }, "ipam.rangeStart: given without ipam.subnet"],
    ["subnet missing in a range", { ranges: [[{ gateway: "10.0.0.1" }]] }, "ipam.ranges[0][0].subnet: missing"],
    ["ranges not an array", { ranges: "10.0.0.0/24" }, "ipam.ranges: "],
    ["dataDir not a string", { subnet: "10.0.0.0/24", dataDir: 5 }, "ipam.dataDir: "],
    ["route dst", { subnet: "10.0.0.0/24", routes: [{ dst: "0.0.0.0/0" }, { dst: "default" }] }, "ipam.routes[1].dst: "],
    ["route gw family", { subnet: "10.0.0.0/24", routes: [{ dst: "0.0.0.0/0", gw: "fd00::1" }] }, "ipam.routes[0].gw: fd00::1 is not of the same family as dst 0.0.0.0/0"],
    ["runtime ipRanges", {}, "runtimeConfig.ipRanges[0][0].subnet: not a CIDR", { runtimeConfig: { ipRanges: [[{ subnet: "x" }]] } }]
  ]
  for (const [label, ipam, message, extra] of cases) {
    test(label, () => {
      const error = loadError(ipam, extra)
      expect([error.code, error.msg.slice(0, message.length)]).toEqual([7, message])
    })
  }

  test("a config without ipam", () => {
    const conf = Effect.runSync(decodeNetConf({ cniVersion: "1.0.0", name: "net", type: "host-local" }))
    expect(failure(loadHostLocalConfig(conf)).msg).toBe("ipam: missing")
  })
})

const request = (conf: NetConf, args = ""): PluginRequest => ({
  env: {
    command: "ADD",
    containerId: "c1",
    netns: "/x",
    ifname: "eth0",
    argsRaw: args,
    args: args === "" ? [] : args.split(";").map((pair) => {
      const eq = pair.indexOf("=")
      return [pair.slice(0, eq), pair.slice(eq + 1)] as const
    }),
    ignoreUnknown: false,
    pathRaw: ""
  },
  conf,
  raw: {},
  prevResult: undefined
})

const dualStack = { ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "fd00::/64" }]] }

const resolve = (extra: Record<string, unknown>, args = "") => {
  const conf = netconf(dualStack, extra)
  return Effect.gen(function*() {
    const config = yield* loadHostLocalConfig(conf)
    return yield* resolveRequested(config, yield* requestedTexts(request(conf, args)))
  })
}

const resolved = (extra: Record<string, unknown>, args = "") =>
  [...Effect.runSync(resolve(extra, args)).entries()].map(([set, requested]) => [set, formatIp(requested.ip), requested.field])

describe("requested addresses", () => {
  test("from CNI_ARGS, args.cni.ips and runtimeConfig.ips, matched to their sets", () => {
    expect(resolved({ runtimeConfig: { ips: ["fd00::9/64"] }, args: { cni: { ips: ["10.0.0.9"] } } })).toEqual([
      [0, "10.0.0.9", "args.cni.ips[0]"],
      [1, "fd00::9", "runtimeConfig.ips[0]"]
    ])
    expect(resolved({}, "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.7,fd00::7")).toEqual([
      [0, "10.0.0.7", "CNI_ARGS IP"],
      [1, "fd00::7", "CNI_ARGS IP"]
    ])
  })

  test("the same address from two sources counts once", () => {
    expect(resolved({ runtimeConfig: { ips: ["10.0.0.9/24"] } }, "IP=10.0.0.9")).toEqual([[0, "10.0.0.9", "CNI_ARGS IP"]])
  })

  const errors: Array<[string, Record<string, unknown>, string, number, string]> = [
    ["not an address", { runtimeConfig: { ips: ["ten"] } }, "", 7, `runtimeConfig.ips[0]: not an IP address: "ten"`],
    ["outside every range", { args: { cni: { ips: ["10.9.9.9"] } } }, "", 7, "args.cni.ips[0]: 10.9.9.9 is not in any configured range"],
    ["the gateway", { runtimeConfig: { ips: ["10.0.0.1"] } }, "", 7, "runtimeConfig.ips[0]: 10.0.0.1 is the gateway of 10.0.0.0/24"],
    ["two in one set", { runtimeConfig: { ips: ["10.0.0.5", "10.0.0.6"] } }, "", 7, "runtimeConfig.ips[1]: 10.0.0.6 and 10.0.0.5 (runtimeConfig.ips[0]) are both in range set ipam.ranges[0]"],
    ["ips not an array", { runtimeConfig: { ips: "10.0.0.5" } }, "", 7, "runtimeConfig.ips: expected an array of strings"],
    ["bad CNI_ARGS IP", {}, "IP=10.0.0.300", 4, `CNI_ARGS: IP: not an IP address: "10.0.0.300"`]
    // unknown keys and IgnoreUnknown are the skel's, for every plugin (packages/skel/test)
  ]
  for (const [label, extra, args, code, message] of errors) {
    test(label, () => {
      const error = failure(resolve(extra, args))
      expect([error.code, error.msg.slice(0, message.length)]).toEqual([code, message])
    })
  }
})
