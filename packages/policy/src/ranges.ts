/**
 * Address sets as sorted, disjoint ranges: an ipBlock minus its excepts, unioned with pod
 * IPs, becomes the fewest CIDR prefixes covering exactly those addresses — what an nft
 * interval set takes (its elements must not overlap).
 */
import { bits, type Cidr, formatCidr, type IpFamily, lastOf, parseIp } from "@tscni/ip"

export interface Range {
  readonly from: bigint
  readonly to: bigint
}

export const rangeOfCidr = (cidr: Cidr): Range => ({ from: cidr.ip.value, to: lastOf(cidr).value })

/** Sorted, merged (overlapping or adjacent ranges joined). */
export const union = (ranges: ReadonlyArray<Range>): Array<Range> => {
  const sorted = [...ranges].sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0))
  const out: Array<Range> = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && r.from <= last.to + 1n) {
      if (r.to > last.to) out[out.length - 1] = { from: last.from, to: r.to }
    } else out.push(r)
  }
  return out
}

/** `ranges` minus `cut` (both any order). */
export const subtract = (ranges: ReadonlyArray<Range>, cut: ReadonlyArray<Range>): Array<Range> => {
  let out = union(ranges)
  for (const c of union(cut)) {
    const next: Array<Range> = []
    for (const r of out) {
      if (c.to < r.from || c.from > r.to) {
        next.push(r)
        continue
      }
      if (c.from > r.from) next.push({ from: r.from, to: c.from - 1n })
      if (c.to < r.to) next.push({ from: c.to + 1n, to: r.to })
    }
    out = next
  }
  return out
}

/** Whether `value` lies in one of `ranges`. */
export const inRanges = (ranges: ReadonlyArray<Range>, value: bigint): boolean => ranges.some((r) => value >= r.from && value <= r.to)

/** The fewest CIDRs covering exactly `ranges` (disjoint), in nft's canonical text (a /32 or /128 is the address alone). */
export const toCidrs = (family: IpFamily, ranges: ReadonlyArray<Range>): Array<string> => {
  const width = bits(family)
  const out: Array<string> = []
  for (const r of ranges) {
    let start = r.from
    while (start <= r.to) {
      // the largest aligned block starting at `start` that stays inside the range
      let size = 0
      while (size < width && (start & ((1n << BigInt(size + 1)) - 1n)) === 0n && start + (1n << BigInt(size + 1)) - 1n <= r.to) size++
      const cidr: Cidr = { ip: { family, value: start }, prefix: width - size }
      out.push(size === 0 ? formatCidr(cidr).split("/")[0]! : formatCidr(cidr))
      start += 1n << BigInt(size)
    }
  }
  return out
}

/** An IP's family and value, or undefined. */
export const ipValue = (text: string): { readonly family: IpFamily; readonly value: bigint } | undefined => parseIp(text)
