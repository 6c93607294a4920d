/**
 * host-local's configuration, read as the reference reads it (`ranges`, the legacy
 * top-level `subnet`/`rangeStart`/`rangeEnd`/`gateway`, the `ipRanges` capability, `routes`,
 * `dataDir`, `resolvConf`) and validated completely before anything touches the disk.
 * Every error is code 7 and names the field path.
 */
import { Effect, Schema } from "effect"
import {
  bits,
  type Cidr,
  contains,
  formatCidr,
  formatIp,
  hasHostBits,
  type Ip,
  type IpFamily,
  lastOf,
  networkOf,
  parseCidr,
  parseIp,
  sameIp
} from "@tscni/ip"
import type { PluginRequest } from "@tscni/skel"
import { type CniError, eachWithGoFieldNames, invalidConfig, type NetConf } from "@tscni/spec"
import { decodeField, decodeRoutes, type Route } from "../decode.ts"
import { argsCniIps, cniArgsList, cniArgValue, type RequestedText, runtimeConfigIps } from "../requestedIps.ts"
import { describeRange, describeSet, rangeContains } from "./allocate.ts"

/** Where host-local keeps its allocations when `dataDir` is not set (the reference's default). */
export const DEFAULT_DATA_DIR = "/var/lib/cni/networks"

/** One range with every default filled in. */
export interface Range {
  /** the network (host bits clear) */
  readonly subnet: Cidr
  readonly rangeStart: Ip
  readonly rangeEnd: Ip
  /** never handed out; network+1 unless configured */
  readonly gateway: Ip
  /** where it was configured: `ipam.ranges[0][1]`, `ipam` (legacy keys), `runtimeConfig.ipRanges[0][0]` */
  readonly field: string
}

/** A range set: one address is allocated from each set (one per family gives dual stack). */
export interface RangeSet {
  /** position among all sets; names the `last_reserved_ip.<index>` file */
  readonly index: number
  readonly family: IpFamily
  readonly ranges: ReadonlyArray<Range>
  readonly field: string
}

/** host-local's validated configuration. */
export interface HostLocalConfig {
  /** the network name: the store directory under dataDir */
  readonly network: string
  readonly rangeSets: ReadonlyArray<RangeSet>
  readonly routes: ReadonlyArray<Route>
  readonly dataDir: string
  readonly resolvConf: string | undefined
}

const RangeConf = Schema.Struct({
  subnet: Schema.String,
  rangeStart: Schema.optionalKey(Schema.String),
  rangeEnd: Schema.optionalKey(Schema.String),
  gateway: Schema.optionalKey(Schema.String)
})
type RangeConf = typeof RangeConf.Type

const RangeSets = Schema.Array(Schema.Array(RangeConf))
const RANGE_FIELDS = Object.keys(RangeConf.fields)

const IpamSection = Schema.Struct({
  subnet: Schema.optionalKey(Schema.String),
  rangeStart: Schema.optionalKey(Schema.String),
  rangeEnd: Schema.optionalKey(Schema.String),
  gateway: Schema.optionalKey(Schema.String),
  ranges: Schema.optionalKey(RangeSets),
  routes: Schema.optionalKey(Schema.Unknown),
  dataDir: Schema.optionalKey(Schema.String),
  resolvConf: Schema.optionalKey(Schema.String)
})

const plus = (ip: Ip, delta: bigint): Ip => ({ family: ip.family, value: ip.value + delta })

/** An optional address key; "" counts as absent, as Go's net.IP decoding has it. */
const optionalIp = (text: string | undefined, field: string, subnet: Cidr): Effect.Effect<Ip | undefined, CniError> =>
  Effect.gen(function*() {
    if (text === undefined || text === "") return undefined
    const ip = parseIp(text)
    if (ip === undefined) return yield* invalidConfig(field, `not an IP address: ${JSON.stringify(text)}`)
    if (ip.family !== subnet.ip.family) {
      return yield* invalidConfig(field, `${text} is not IPv${subnet.ip.family} like subnet ${formatCidr(subnet)}`)
    }
    if (!contains(subnet, ip)) {
      return yield* invalidConfig(field, `${formatIp(ip)} is outside subnet ${formatCidr(subnet)}`)
    }
    return ip
  })

/** rangeStart/rangeEnd must not be the network address (nor, for IPv4, the broadcast address). */
const usableBound = (ip: Ip | undefined, field: string, subnet: Cidr): Effect.Effect<void, CniError> => {
  if (ip === undefined) return Effect.void
  if (sameIp(ip, subnet.ip)) {
    return Effect.fail(invalidConfig(field, `${formatIp(ip)} is the network address of ${formatCidr(subnet)}`))
  }
  if (ip.family === 4 && sameIp(ip, lastOf(subnet))) {
    return Effect.fail(invalidConfig(field, `${formatIp(ip)} is the broadcast address of ${formatCidr(subnet)}`))
  }
  return Effect.void
}

/**
 * Fills in the reference's defaults: rangeStart = network+1, rangeEnd = broadcast−1 for
 * IPv4 (the last address for IPv6), gateway = network+1 (skipped by the allocator).
 */
const normalizeRange = (conf: RangeConf, field: string): Effect.Effect<Range, CniError> =>
  Effect.gen(function*() {
    const parsed = parseCidr(conf.subnet)
    if (parsed === undefined) return yield* invalidConfig(`${field}.subnet`, `not a CIDR: ${JSON.stringify(conf.subnet)}`)
    // a /31 or /32 (/127, /128) has no address left once network and gateway are set aside
    if (parsed.prefix > bits(parsed.ip.family) - 2) {
      return yield* invalidConfig(`${field}.subnet`, `${conf.subnet} is too small to allocate from`)
    }
    if (hasHostBits(parsed)) {
      return yield* invalidConfig(
        `${field}.subnet`,
        `${conf.subnet} has host bits set (the network is ${formatCidr(networkOf(parsed))})`
      )
    }
    const subnet = parsed
    const start = yield* optionalIp(conf.rangeStart, `${field}.rangeStart`, subnet)
    const end = yield* optionalIp(conf.rangeEnd, `${field}.rangeEnd`, subnet)
    const gateway = yield* optionalIp(conf.gateway, `${field}.gateway`, subnet)
    yield* usableBound(start, `${field}.rangeStart`, subnet)
    yield* usableBound(end, `${field}.rangeEnd`, subnet)
    const rangeStart = start ?? plus(subnet.ip, 1n)
    const rangeEnd = end ?? (subnet.ip.family === 4 ? plus(lastOf(subnet), -1n) : lastOf(subnet))
    if (rangeStart.value > rangeEnd.value) {
      return yield* invalidConfig(
        `${field}.rangeStart`,
        `${formatIp(rangeStart)} is after rangeEnd ${formatIp(rangeEnd)}`
      )
    }
    return { subnet, rangeStart, rangeEnd, gateway: gateway ?? plus(subnet.ip, 1n), field }
  })

const overlaps = (a: Range, b: Range): boolean =>
  rangeContains(a, b.rangeStart) || rangeContains(a, b.rangeEnd) || rangeContains(b, a.rangeStart) ||
  rangeContains(b, a.rangeEnd)

const normalizeSet = (
  confs: ReadonlyArray<RangeConf>,
  field: string,
  index: number
): Effect.Effect<RangeSet, CniError> =>
  Effect.gen(function*() {
    if (confs.length === 0) return yield* invalidConfig(field, "empty range set")
    const ranges: Array<Range> = []
    for (const [j, conf] of confs.entries()) {
      const range = yield* normalizeRange(conf, `${field}[${j}]`)
      const first = ranges[0]
      if (first !== undefined && first.subnet.ip.family !== range.subnet.ip.family) {
        return yield* invalidConfig(
          `${range.field}.subnet`,
          `mixed address families in one range set (IPv${range.subnet.ip.family} after IPv${first.subnet.ip.family})`
        )
      }
      const clash = ranges.find((other) => overlaps(other, range))
      if (clash !== undefined) {
        return yield* invalidConfig(range.field, `${describeRange(range)} overlaps ${clash.field} (${describeRange(clash)})`)
      }
      ranges.push(range)
    }
    return { index, family: ranges[0]!.subnet.ip.family, ranges, field }
  })

/**
 * Decodes and validates the `ipam` section. Range sets are ordered as the reference orders
 * them (runtime `ipRanges`, then the legacy single range, then `ranges`), because a set's
 * position names its `last_reserved_ip.<n>` file.
 */
export const loadHostLocalConfig = (conf: NetConf): Effect.Effect<HostLocalConfig, CniError> =>
  Effect.gen(function*() {
    if (conf.ipam === undefined) return yield* invalidConfig("ipam", "missing")
    const ipam = yield* decodeField(IpamSection, conf.ipam, "ipam")
    const sources: Array<{ confs: ReadonlyArray<RangeConf>; field: string }> = []
    const ipRanges = conf.runtimeConfig?.ipRanges
    if (ipRanges !== undefined && ipRanges !== null) {
      // containerd sends the ranges with Go's field names (Subnet, …): read as Go does
      const goNamed = Array.isArray(ipRanges) ? ipRanges.map((set) => eachWithGoFieldNames(set, RANGE_FIELDS)) : ipRanges
      const sets = yield* decodeField(RangeSets, goNamed, "runtimeConfig.ipRanges")
      for (const [i, set] of sets.entries()) sources.push({ confs: set, field: `runtimeConfig.ipRanges[${i}]` })
    }
    if (ipam.subnet !== undefined && ipam.subnet !== "") {
      const legacy: RangeConf = {
        subnet: ipam.subnet,
        ...(ipam.rangeStart === undefined ? {} : { rangeStart: ipam.rangeStart }),
        ...(ipam.rangeEnd === undefined ? {} : { rangeEnd: ipam.rangeEnd }),
        ...(ipam.gateway === undefined ? {} : { gateway: ipam.gateway })
      }
      sources.push({ confs: [legacy], field: "ipam" })
    } else {
      for (const key of ["rangeStart", "rangeEnd", "gateway"] as const) {
        const value = ipam[key]
        if (value !== undefined && value !== "") return yield* invalidConfig(`ipam.${key}`, "given without ipam.subnet")
      }
    }
    for (const [i, set] of (ipam.ranges ?? []).entries()) sources.push({ confs: set, field: `ipam.ranges[${i}]` })
    if (sources.length === 0) return yield* invalidConfig("ipam.ranges", "no IP ranges specified")

    const rangeSets: Array<RangeSet> = []
    for (const [index, source] of sources.entries()) {
      // the legacy keys sit directly in `ipam`, so their paths are `ipam.subnet` etc.
      const set = source.field === "ipam"
        ? yield* normalizeRange(source.confs[0]!, "ipam").pipe(
          Effect.map((range): RangeSet => ({ index, family: range.subnet.ip.family, ranges: [range], field: "ipam" }))
        )
        : yield* normalizeSet(source.confs, source.field, index)
      for (const earlier of rangeSets) {
        for (const range of set.ranges) {
          const clash = earlier.ranges.find((other) => overlaps(other, range))
          if (clash !== undefined) {
            return yield* invalidConfig(
              range.field,
              `${describeRange(range)} overlaps ${clash.field} (${describeRange(clash)}) of another range set`
            )
          }
        }
      }
      rangeSets.push(set)
    }
    const routes = yield* decodeRoutes(ipam.routes, "ipam.routes")
    return {
      network: conf.name,
      rangeSets,
      routes,
      dataDir: ipam.dataDir === undefined || ipam.dataDir === "" ? DEFAULT_DATA_DIR : ipam.dataDir,
      resolvConf: ipam.resolvConf === undefined || ipam.resolvConf === "" ? undefined : ipam.resolvConf
    }
  })

/**
 * The addresses a runtime asked for, in the reference's order: CNI_ARGS `IP=` (comma
 * separated here; the reference takes one), `args.cni.ips`, `runtimeConfig.ips`. Each may
 * be a plain address or a CIDR (its prefix is ignored, as the reference ignores it).
 */
export const requestedTexts = (request: PluginRequest): Effect.Effect<ReadonlyArray<RequestedText>, CniError> =>
  Effect.gen(function*() {
    return [
      ...cniArgsList(cniArgValue(request.env.args, "IP"), "IP"),
      ...(yield* argsCniIps(request.conf)),
      ...(yield* runtimeConfigIps(request.conf))
    ]
  })

/** A requested address, matched to the range set it will be allocated from. */
export interface RequestedIp {
  readonly ip: Ip
  readonly set: RangeSet
  readonly field: string
}

/**
 * Matches requested addresses to range sets: each must parse, lie in a range of some set,
 * not be that range's gateway, and be the only one requested from its set. Duplicates
 * (the same address from two sources) count once.
 */
export const resolveRequested = (
  config: HostLocalConfig,
  texts: ReadonlyArray<RequestedText>
): Effect.Effect<ReadonlyMap<number, RequestedIp>, CniError> =>
  Effect.gen(function*() {
    const bySet = new Map<number, RequestedIp>()
    for (const entry of texts) {
      const ip = parseIp(entry.text) ?? parseCidr(entry.text)?.ip
      if (ip === undefined) return yield* entry.fail(`not an IP address: ${JSON.stringify(entry.text)}`)
      const set = config.rangeSets.find((candidate) => candidate.ranges.some((range) => rangeContains(range, ip)))
      if (set === undefined) {
        const all = config.rangeSets.map(describeSet).join("; ")
        return yield* entry.fail(`${formatIp(ip)} is not in any configured range (${all})`)
      }
      const range = set.ranges.find((candidate) => rangeContains(candidate, ip))!
      if (sameIp(range.gateway, ip)) {
        return yield* entry.fail(`${formatIp(ip)} is the gateway of ${formatCidr(range.subnet)}`)
      }
      const earlier = bySet.get(set.index)
      if (earlier !== undefined) {
        if (sameIp(earlier.ip, ip)) continue
        return yield* entry.fail(
          `${formatIp(ip)} and ${formatIp(earlier.ip)} (${earlier.field}) are both in range set ${set.field} (${
            describeSet(set)
          }); only one address per range set`
        )
      }
      bySet.set(set.index, { ip, set, field: entry.field })
    }
    return bySet
  })
