import { describe, expect, test } from "bun:test"
import {
  cidrFamily,
  contains,
  formatCidr,
  formatIp,
  fromBytes,
  hasHostBits,
  ipFamily,
  lastOf,
  networkOf,
  parseCidr,
  parseIp,
  parseMac,
  sameCidrText,
  sameIpText,
  toBytes
} from "../src/index.ts"

describe("addresses", () => {
  const canonical: Array<[string, string]> = [
    ["10.1.2.3", "10.1.2.3"],
    ["fd00::2", "fd00::2"],
    ["::", "::"],
    ["::1", "::1"],
    ["FE80::858:AFF:FE01:2", "fe80::858:aff:fe01:2"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["::ffff:10.0.0.1", "::ffff:a00:1"]
  ]
  for (const [input, printed] of canonical) {
    test(`${input} prints as ${printed} and survives bytes`, () => {
      const ip = parseIp(input)!
      expect(formatIp(ip)).toBe(printed)
      expect(fromBytes(ip.family, toBytes(ip))).toEqual(ip)
    })
  }

  test("rejects what inet_pton rejects", () => {
    for (const bad of ["", "10.1.2", "10.1.2.256", "010.1.2.3", "1::2::3", "fd00::g", "1:2:3:4:5:6:7:8:9", "host.example", "fe80::1%eth0", "1.2.3.4::", "1.2.3.4::1", "::1.2.3.4:5"]) {
      expect(parseIp(bad)).toBeUndefined()
    }
    expect([ipFamily("10.0.0.1"), ipFamily("::1"), ipFamily("x")]).toEqual([4, 6, undefined])
  })

  test("network byte order", () => {
    expect(Array.from(toBytes(parseIp("10.1.2.3")!))).toEqual([10, 1, 2, 3])
    expect(toBytes(parseIp("fd00::1")!)).toHaveLength(16)
  })
})

describe("comparing address texts", () => {
  test("the same address however spelled; different addresses, prefixes or families differ", () => {
    expect(sameIpText("FD00:0::1", "fd00::1")).toBe(true)
    expect(sameIpText("fd00::1", "fd00::2")).toBe(false)
    expect(sameIpText("10.0.0.1", "::ffff:10.0.0.1")).toBe(false)
    expect(sameCidrText("fd00:0:0::5/64", "fd00::5/64")).toBe(true)
    expect(sameCidrText("fd00::5/64", "fd00::5/48")).toBe(false)
    expect(sameCidrText("10.1.0.2/24", "10.1.0.0/24")).toBe(false)
  })
  test("text that is not an address compares case-blind", () => {
    expect(sameCidrText("default", "DEFAULT")).toBe(true)
    expect(sameCidrText("default", "10.0.0.0/8")).toBe(false)
  })
})

describe("CIDRs", () => {
  test("parse keeps host bits; a prefix is required and bounded", () => {
    expect(formatCidr(parseCidr("10.1.0.2/24")!)).toBe("10.1.0.2/24")
    expect([cidrFamily("fd00::/64"), cidrFamily("10.0.0.1"), cidrFamily("10.0.0.0/33"), cidrFamily("fd00::/129")]).toEqual([
      6,
      undefined,
      undefined,
      undefined
    ])
  })

  test("network, last address, containment", () => {
    const cidr = parseCidr("10.1.2.3/24")!
    expect(formatCidr(networkOf(cidr))).toBe("10.1.2.0/24")
    expect(formatIp(lastOf(cidr))).toBe("10.1.2.255")
    expect(formatIp(lastOf(parseCidr("10.1.2.3/8")!))).toBe("10.255.255.255")
    expect(formatIp(lastOf(parseCidr("fd00::1/112")!))).toBe("fd00::ffff")
    expect(hasHostBits(cidr)).toBe(true)
    expect(hasHostBits(parseCidr("10.1.2.0/24")!)).toBe(false)
    expect(contains(cidr, parseIp("10.1.2.200")!)).toBe(true)
    expect(contains(cidr, parseIp("10.1.3.1")!)).toBe(false)
    expect(contains(cidr, parseIp("::1")!)).toBe(false)
  })
})

test("MACs", () => {
  expect(parseMac("0A:58:0a:01:00:02")).toBe("0a:58:0a:01:00:02")
  expect(parseMac("0a:58:0a:01:00")).toBeUndefined()
})
