/**
 * The pure part of host-local: which address comes next. No IO here, so round robin,
 * wrap-around, gateway skipping and exhaustion are tested without a store.
 */
import { formatIp, type Ip, sameIp } from "@tscni/ip"
import type { Range, RangeSet } from "./config.ts"

/** Within the range's [rangeStart, rangeEnd] (same family). */
export const rangeContains = (range: Range, ip: Ip): boolean =>
  ip.family === range.rangeStart.family && ip.value >= range.rangeStart.value && ip.value <= range.rangeEnd.value

/** The range of the set that holds `ip`, if any. */
export const rangeFor = (set: RangeSet, ip: Ip): Range | undefined => set.ranges.find((range) => rangeContains(range, ip))

/** `10.0.0.2-10.0.0.254`, as the reference prints a range. */
export const describeRange = (range: Range): string => `${formatIp(range.rangeStart)}-${formatIp(range.rangeEnd)}`

/** The set's ranges, comma separated (the reference's RangeSet.String). */
export const describeSet = (set: RangeSet): string => set.ranges.map(describeRange).join(",")

const isGateway = (set: RangeSet, ip: Ip): boolean => set.ranges.some((range) => sameIp(range.gateway, ip))

/** One candidate: the address and the range (hence prefix and gateway) it comes from. */
export interface Candidate {
  readonly ip: Ip
  readonly range: Range
}

function* span(range: Range, from: bigint, to: bigint): Generator<Candidate> {
  for (let value = from; value <= to; value++) yield { ip: { family: range.rangeStart.family, value }, range }
}

/**
 * Every allocatable address of the set, each once, in round-robin order: starting right
 * after `lastReserved` when it lies in the set (wrapping through the following ranges and
 * back to the start), otherwise at the first range's start. Gateways are skipped. Lazy, so
 * an IPv6 /64 costs only what is visited.
 */
export function* candidates(set: RangeSet, lastReserved: Ip | undefined): Generator<Candidate> {
  const ranges = set.ranges
  const at = lastReserved === undefined ? -1 : ranges.findIndex((range) => rangeContains(range, lastReserved))
  const order: Array<Generator<Candidate>> = []
  if (at < 0 || lastReserved === undefined) {
    for (const range of ranges) order.push(span(range, range.rangeStart.value, range.rangeEnd.value))
  } else {
    const first = ranges[at]!
    order.push(span(first, lastReserved.value + 1n, first.rangeEnd.value))
    for (let i = 1; i < ranges.length; i++) {
      const range = ranges[(at + i) % ranges.length]!
      order.push(span(range, range.rangeStart.value, range.rangeEnd.value))
    }
    order.push(span(first, first.rangeStart.value, lastReserved.value))
  }
  for (const part of order) {
    for (const candidate of part) if (!isGateway(set, candidate.ip)) yield candidate
  }
}

/** The next free address of the set after `lastReserved`, or undefined when the set is exhausted. */
export const nextFree = (
  set: RangeSet,
  isTaken: (ip: Ip) => boolean,
  lastReserved: Ip | undefined
): Candidate | undefined => {
  for (const candidate of candidates(set, lastReserved)) if (!isTaken(candidate.ip)) return candidate
  return undefined
}

/** How many addresses the set can hand out (its ranges minus the gateways inside them). */
export const capacity = (set: RangeSet): bigint => {
  let total = 0n
  for (const range of set.ranges) total += range.rangeEnd.value - range.rangeStart.value + 1n
  const gateways = new Set<string>()
  for (const range of set.ranges) {
    if (set.ranges.some((r) => rangeContains(r, range.gateway))) gateways.add(formatIp(range.gateway))
  }
  return total - BigInt(gateways.size)
}
