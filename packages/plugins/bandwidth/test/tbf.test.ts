import { describe, expect, test } from "bun:test"
import { burstMatches, limitBytes, tbfFor, tbfMatches } from "../src/tbf.ts"

describe("token bucket arithmetic", () => {
  test("limit = 25 ms at the rate + the burst, in bytes; bits truncated to whole bytes", () => {
    expect(limitBytes({ rate: 1_000_000, burst: 100_000 })).toBe(3125 + 12_500)
    expect(tbfFor({ rate: 1_000_007, burst: 100_007 })).toEqual({ rate: 1_000_000, burst: 100_000, limit: 15_625 })
    // containerd's burst: MaxUint32 bits
    expect(tbfFor({ rate: 1_000_000, burst: 4294967295 })).toEqual({ rate: 1_000_000, burst: 4294967288, limit: 536874036 })
  })

  // what LinuxBackend.listQdiscs reported for these tbfs on kernel 6.18: the bucket comes back
  // in 64 ns ticks in a u32, rounded, and wrapped when longer than 2^32 ticks
  const observed: Array<[number, number, number]> = [
    [1e6, 4294967295, 171798680],
    [1e7, 4294967295, 1546188216],
    [1e5, 4294967295, 6871936],
    [8, 121120, 176],
    [1e10, 100_000, 99_840],
    [3e9, 4294967295, 4294967232],
    [1e6, 100_000, 100_000]
  ]
  for (const [rate, burst, reported] of observed) {
    test(`the kernel's report of rate ${rate}, burst ${burst} matches; a burst 20000 bits off does not`, () => {
      const tbf = tbfFor({ rate, burst })
      expect(tbfMatches({ ...tbf, burst: reported }, tbf)).toBe(true)
      expect(burstMatches(reported + 20_000, tbf)).toBe(false)
      expect(burstMatches(reported - 20_000, tbf)).toBe(false)
    })
  }

  test("rate and limit are compared exactly", () => {
    const tbf = tbfFor({ rate: 1e6, burst: 100_000 })
    expect(tbfMatches({ ...tbf, rate: tbf.rate + 8 }, tbf)).toBe(false)
    expect(tbfMatches({ ...tbf, limit: tbf.limit + 1 }, tbf)).toBe(false)
  })
})
