import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { formatIp, type Ip, parseIp } from "@tscni/ip"
import { decodeNetConf } from "@tscni/spec"
import { candidates, capacity, loadHostLocalConfig, nextFree, type RangeSet } from "../src/index.ts"

const setOf = (ranges: Array<Record<string, string>>): RangeSet => {
  const conf = Effect.runSync(decodeNetConf({
    cniVersion: "1.0.0",
    name: "n",
    type: "host-local",
    ipam: { type: "host-local", ranges: [ranges] }
  }))
  return Effect.runSync(loadHostLocalConfig(conf)).rangeSets[0]!
}

const ip = (text: string): Ip => parseIp(text)!

const order = (set: RangeSet, last?: string): Array<string> =>
  [...candidates(set, last === undefined ? undefined : ip(last))].map((c) => formatIp(c.ip))

const takenBy = (texts: Array<string>) => (candidate: Ip) => texts.includes(formatIp(candidate))

describe("candidates: the round-robin order", () => {
  const slash29 = setOf([{ subnet: "10.0.0.0/29" }])

  test("a fresh /29 starts after the gateway and stops before the broadcast address", () => {
    expect(order(slash29)).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"])
  })

  test("starts after the last reserved address and wraps around to it", () => {
    expect(order(slash29, "10.0.0.4")).toEqual(["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"])
    expect(order(slash29, "10.0.0.6")).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"])
  })

  test("a last reserved address outside the set is ignored", () => {
    expect(order(slash29, "192.168.0.4")[0]).toBe("10.0.0.2")
    expect(order(slash29, "fd00::4")[0]).toBe("10.0.0.2")
  })

  test("a configured gateway inside the range is skipped wherever it is", () => {
    const set = setOf([{ subnet: "10.0.0.0/29", gateway: "10.0.0.4" }])
    expect(order(set)).toEqual(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"])
  })

  test("several ranges in one set are walked in order, wrapping from the last to the first", () => {
    const set = setOf([
      { subnet: "10.0.0.0/24", rangeStart: "10.0.0.10", rangeEnd: "10.0.0.11" },
      { subnet: "10.0.1.0/24", rangeStart: "10.0.1.20", rangeEnd: "10.0.1.21" }
    ])
    expect(order(set, "10.0.1.20")).toEqual(["10.0.1.21", "10.0.0.10", "10.0.0.11", "10.0.1.20"])
  })

  test("IPv6 ranges end at the last address and are visited lazily", () => {
    const small = setOf([{ subnet: "fd00::/126" }])
    expect(order(small)).toEqual(["fd00::2", "fd00::3"])
    const huge = setOf([{ subnet: "fd00::/64" }])
    const first = candidates(huge, ip("fd00::ffff:ffff:ffff:fffe")).next()
    expect(formatIp(first.value!.ip)).toBe("fd00::ffff:ffff:ffff:ffff")
  })
})

describe("nextFree", () => {
  const slash29 = setOf([{ subnet: "10.0.0.0/29" }])

  test("skips taken addresses", () => {
    expect(formatIp(nextFree(slash29, takenBy(["10.0.0.2", "10.0.0.3"]), undefined)!.ip)).toBe("10.0.0.4")
  })

  test("wraps past the end to free addresses before the last reserved one", () => {
    expect(formatIp(nextFree(slash29, takenBy(["10.0.0.6"]), ip("10.0.0.5"))!.ip)).toBe("10.0.0.2")
  })

  test("an exhausted set gives undefined", () => {
    expect(nextFree(slash29, takenBy(order(slash29)), ip("10.0.0.3"))).toBeUndefined()
  })

  test("the candidate carries its range (prefix and gateway for the result)", () => {
    const found = nextFree(slash29, () => false, undefined)!
    expect([found.range.subnet.prefix, formatIp(found.range.gateway)]).toEqual([29, "10.0.0.1"])
  })
})

describe("capacity", () => {
  test("counts the ranges minus the gateways inside them", () => {
    expect(capacity(setOf([{ subnet: "10.0.0.0/29" }]))).toBe(5n)
    expect(capacity(setOf([{ subnet: "10.0.0.0/30" }]))).toBe(1n)
    expect(capacity(setOf([{ subnet: "10.0.0.0/24", rangeStart: "10.0.0.100", rangeEnd: "10.0.0.109" }]))).toBe(10n)
    expect(capacity(setOf([{ subnet: "fd00::/64" }]))).toBe((1n << 64n) - 2n)
  })
})
