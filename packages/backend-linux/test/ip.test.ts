import { describe, expect, test } from "bun:test"
import { ipToString, ipv4Broadcast, networkBytes, parseCidr, parseIp } from "../src/ip.ts"

describe("IP text ⇄ bytes", () => {
  const roundTrips: Array<[string, string]> = [
    ["10.1.2.3", "10.1.2.3"],
    ["fd00::2", "fd00::2"],
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::858:aff:fe01:2", "fe80::858:aff:fe01:2"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"],
    ["::ffff:10.0.0.1", "::ffff:a00:1"]
  ]
  for (const [input, printed] of roundTrips) {
    test(`${input} → ${printed}`, () => {
      const parsed = parseIp(input)
      expect(parsed).toBeDefined()
      expect(ipToString(parsed!.family, parsed!.bytes)).toBe(printed)
    })
  }

  test("rejects what is not an address", () => {
    for (const bad of ["", "10.1.2", "10.1.2.256", "1::2::3", "fd00::g", "1:2:3:4:5:6:7:8:9", "host.example"]) {
      expect(parseIp(bad)).toBeUndefined()
    }
  })

  test("CIDRs", () => {
    expect(parseCidr("10.1.0.2/24")).toMatchObject({ family: 4, prefix: 24 })
    expect(parseCidr("fd00::/64")).toMatchObject({ family: 6, prefix: 64 })
    expect(parseCidr("10.0.0.1")).toMatchObject({ prefix: 32 })
    for (const bad of ["10.0.0.0/33", "fd00::/129", "10.0.0.0/x", "10.0.0.0/24/1"]) expect(parseCidr(bad)).toBeUndefined()
  })

  test("broadcast and network", () => {
    const { bytes } = parseIp("10.1.2.3")!
    expect(Array.from(ipv4Broadcast(bytes, 24))).toEqual([10, 1, 2, 255])
    expect(Array.from(ipv4Broadcast(bytes, 8))).toEqual([10, 255, 255, 255])
    expect(Array.from(networkBytes(bytes, 16))).toEqual([10, 1, 0, 0])
    expect(ipToString(6, networkBytes(parseIp("fd00::1:2")!.bytes, 112))).toBe("fd00::1:0")
  })
})
