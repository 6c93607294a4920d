/**
 * Token bucket arithmetic, as the reference plugin does it: rates and bursts arrive in bits
 * (per second), the kernel takes bytes; the queue holds 25 ms of traffic at the rate plus
 * the burst (limit = rate * latency / 8 + burst bytes).
 */
import type { TbfOptions } from "@tscni/backend"

/** How long a packet may wait in the queue, as in the reference plugin. */
const LATENCY_MS = 25

/** Largest value the kernel's 32-bit byte fields (burst, limit) hold. */
export const MAX_U32 = 0xffffffff

/** The Ethernet header a packet carries on top of the MTU; a bucket smaller than both drops it. */
export const ETHERNET_HEADER = 14

/** The kernel's scheduler clock: one tick is 64 ns, and a tbf reports its bucket in ticks (u32). */
const NS_PER_TICK = 64

/** What one direction is limited to, in the config's units. */
export interface Limit {
  /** bits per second */
  readonly rate: number
  /** bits */
  readonly burst: number
}

/** The config's rate (bits/s) in the whole bytes/s the kernel's tbf takes. */
export const rateBytes = (limit: Limit): number => Math.floor(limit.rate / 8)
/** The config's burst (bits) in whole bytes; also what ADD checks can hold one full frame. */
export const burstBytes = (limit: Limit): number => Math.floor(limit.burst / 8)

/** The queue limit in bytes: 25 ms at the rate, plus the bucket. */
export const limitBytes = (limit: Limit): number => Math.floor((rateBytes(limit) * LATENCY_MS) / 1000) + burstBytes(limit)

/**
 * The tbf the kernel gets: rate and burst truncated to whole bytes (given back in bits, the
 * Backend's unit), so what is written is exactly what the kernel can store and report.
 */
export const tbfFor = (limit: Limit): TbfOptions => ({
  rate: rateBytes(limit) * 8,
  burst: burstBytes(limit) * 8,
  limit: limitBytes(limit)
})

/**
 * The burst a kernel tbf reports for the bucket it was given. The kernel keeps the bucket as
 * a time (ns at the rate) and reports it in 64 ns ticks in a u32, so it comes back rounded to
 * a tick and, for buckets longer than 2^32 ticks (containerd's 4 Gbit burst at a low rate),
 * wrapped around.
 */
const reportedBurst = (tbf: TbfOptions): number => {
  const bytesPerSecond = tbf.rate / 8
  const ns = Math.floor(((tbf.burst / 8) * 1e9) / bytesPerSecond)
  const ticks = Math.floor(ns / NS_PER_TICK) % 2 ** 32
  return Math.round((ticks * NS_PER_TICK * bytesPerSecond) / 1e9) * 8
}

/** True when a reported burst is the expected one, within the kernel's tick rounding. */
export const burstMatches = (reported: number, expected: TbfOptions): boolean => {
  // two ticks' worth of bytes at the rate, plus one byte each way of rounding
  const tolerance = (Math.ceil((2 * NS_PER_TICK * expected.rate) / 8 / 1e9) + 2) * 8
  return Math.abs(reported - expected.burst) <= tolerance || Math.abs(reported - reportedBurst(expected)) <= tolerance
}

/** True when a reported tbf is the one `expected` describes: same rate and limit, burst within rounding. */
export const tbfMatches = (reported: TbfOptions, expected: TbfOptions): boolean =>
  reported.rate === expected.rate && reported.limit === expected.limit && burstMatches(reported.burst, expected)

/** Human form of a tbf for error messages. */
export const describeTbf = (tbf: TbfOptions): string => `rate ${tbf.rate} bit/s, burst ${tbf.burst} bit, limit ${tbf.limit} B`
