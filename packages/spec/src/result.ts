/**
 * CNI results: one canonical in-memory shape (spec 1.1.0) plus the wire forms
 * of older versions, with decode/encode/convert between them.
 */
import { Effect, Schema } from "effect"
import { decodeFailure, incompatibleVersion, internalError, type CniError } from "./errors.ts"
import { cidrFamily, ipFamily } from "@tscni/ip"

const isIP = (text: string): boolean => ipFamily(text) !== undefined
const isCidr = (text: string): boolean => cidrFamily(text) !== undefined
import { describeSchemaError } from "./schema-error.ts"
import { compareVersions, isSupportedVersion } from "./versions.ts"

const Cidr = Schema.String.pipe(
  Schema.check(Schema.makeFilter((s: string) => isCidr(s) || `not a CIDR: ${JSON.stringify(s)}`))
)
const IpString = Schema.String.pipe(
  Schema.check(Schema.makeFilter((s: string) => isIP(s) || `not an IP address: ${JSON.stringify(s)}`))
)
const Uint = Schema.Number.pipe(
  Schema.check(
    Schema.makeFilter((n: number) => (Number.isInteger(n) && n >= 0) || `expected a non-negative integer, got ${n}`)
  )
)

/** An interface a plugin created or knows about (1.1.0 shape). */
export const Interface = Schema.Struct({
  name: Schema.String,
  mac: Schema.optionalKey(Schema.String),
  mtu: Schema.optionalKey(Uint),
  sandbox: Schema.optionalKey(Schema.String),
  socketPath: Schema.optionalKey(Schema.String),
  pciID: Schema.optionalKey(Schema.String)
})

/** One address assigned to an interface (1.x shape: no `version`). */
export const IpConfig = Schema.Struct({
  address: Cidr,
  gateway: Schema.optionalKey(IpString),
  interface: Schema.optionalKey(Uint)
})

/** A route to install (1.1.0 shape, with mtu/advmss/priority/table/scope). */
export const RouteEntry = Schema.Struct({
  dst: Cidr,
  gw: Schema.optionalKey(IpString),
  mtu: Schema.optionalKey(Uint),
  advmss: Schema.optionalKey(Uint),
  priority: Schema.optionalKey(Uint),
  table: Schema.optionalKey(Uint),
  scope: Schema.optionalKey(Uint)
})

/** DNS information in a result. */
export const Dns = Schema.Struct({
  nameservers: Schema.optionalKey(Schema.Array(Schema.String)),
  domain: Schema.optionalKey(Schema.String),
  search: Schema.optionalKey(Schema.Array(Schema.String)),
  options: Schema.optionalKey(Schema.Array(Schema.String))
})

/** The canonical in-memory result every plugin works with (spec 1.1.0 shape). */
export const Result = Schema.Struct({
  cniVersion: Schema.String,
  interfaces: Schema.optionalKey(Schema.Array(Interface)),
  ips: Schema.optionalKey(Schema.Array(IpConfig)),
  routes: Schema.optionalKey(Schema.Array(RouteEntry)),
  dns: Schema.optionalKey(Dns)
})
/** Canonical result type. */
export type Result = typeof Result.Type

/** Whether an interface of a result is inside a sandbox (the pod's) rather than on the host. */
export const inSandbox = (entry: typeof Interface.Type | undefined): boolean => (entry?.sandbox ?? "") !== ""

/**
 * The pod's entries of a result's `ips`: those on an interface inside a sandbox, and those
 * that name no interface (an IPAM-only result). What chained plugins (portmap, firewall)
 * take as "the pod's addresses".
 */
export const podIpConfigs = (result: Result | undefined): Array<typeof IpConfig.Type> => {
  const interfaces = result?.interfaces ?? []
  return (result?.ips ?? []).filter((ip) => ip.interface === undefined || inSandbox(interfaces[ip.interface]))
}

/** The interface `ifname` in `sandbox` as a result reports it (a main plugin's own pod interface). */
export const attachmentInterface = (result: Result | undefined, ifname: string, sandbox: string): typeof Interface.Type | undefined =>
  result?.interfaces?.find((entry) => entry.name === ifname && entry.sandbox === sandbox)

/**
 * One attachment's part of a result: the IPs of its interface `ifname` in `sandbox` (and
 * those that name no interface), everything else as it is. What a main plugin's DEL and
 * CHECK take from prevResult as its own (a chain's result may hold other interfaces' IPs).
 */
export const attachmentResult = (result: Result | undefined, ifname: string, sandbox: string): Result | undefined => {
  if (result === undefined) return undefined
  const index = (result.interfaces ?? []).findIndex((entry) => entry.name === ifname && entry.sandbox === sandbox)
  return { ...result, ips: (result.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === index) }
}

/** The names of a result's host-side interfaces (no sandbox): the bridge, the host veth, an ifb. */
export const hostInterfaceNames = (result: Result | undefined): Array<string> =>
  (result?.interfaces ?? []).filter((entry) => !inSandbox(entry)).map((entry) => entry.name)

// ---- wire forms of older versions (decoding strips keys the version does not define) ----

const InterfaceV1 = Schema.Struct({
  name: Schema.String,
  mac: Schema.optionalKey(Schema.String),
  sandbox: Schema.optionalKey(Schema.String)
})

const RouteV1 = Schema.Struct({ dst: Cidr, gw: Schema.optionalKey(IpString) })

/** 0.3.x/0.4.0 ip entry: `version` ("4"/"6") must match the address family when present. */
const IpConfigV04 = Schema.Struct({
  version: Schema.optionalKey(Schema.Literals(["4", "6"])),
  address: Cidr,
  gateway: Schema.optionalKey(IpString),
  interface: Schema.optionalKey(Uint)
}).pipe(
  Schema.check(
    Schema.makeFilter((ip: { readonly version?: "4" | "6"; readonly address: string; readonly gateway?: string }) => {
      const family = cidrFamily(ip.address)
      if (ip.version !== undefined && family !== undefined && String(family) !== ip.version) {
        return { path: ["version"], issue: `is "${ip.version}" but address ${ip.address} is IPv${family}` }
      }
      if (ip.gateway !== undefined && family !== undefined && ipFamily(ip.gateway) !== family) {
        return { path: ["gateway"], issue: `gateway ${ip.gateway} is not IPv${family} like address ${ip.address}` }
      }
      return undefined
    })
  )
)

const wireFields = {
  cniVersion: Schema.optionalKey(Schema.String),
  dns: Schema.optionalKey(Dns)
}

const ResultV04 = Schema.Struct({
  ...wireFields,
  interfaces: Schema.optionalKey(Schema.Array(InterfaceV1)),
  ips: Schema.optionalKey(Schema.Array(IpConfigV04)),
  routes: Schema.optionalKey(Schema.Array(RouteV1))
})

const ResultV100 = Schema.Struct({
  ...wireFields,
  interfaces: Schema.optionalKey(Schema.Array(InterfaceV1)),
  ips: Schema.optionalKey(Schema.Array(IpConfig)),
  routes: Schema.optionalKey(Schema.Array(RouteV1))
})

const ResultV110 = Schema.Struct({
  ...wireFields,
  interfaces: Schema.optionalKey(Schema.Array(Interface)),
  ips: Schema.optionalKey(Schema.Array(IpConfig)),
  routes: Schema.optionalKey(Schema.Array(RouteEntry))
})

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

const failDecode = (version: string) => (error: unknown): CniError => {
  const { path, message } = describeSchemaError(error)
  return decodeFailure(
    `failed to decode ${version} result: ${path === "" ? message : `${path}: ${message}`}`
  )
}

const versionOf = (json: unknown): string | undefined => {
  if (typeof json !== "object" || json === null || !("cniVersion" in json)) return undefined
  const v = json.cniVersion
  return typeof v === "string" ? v : undefined
}

/**
 * Decodes a result in the wire form of `version` (default: its own
 * `cniVersion`) into the canonical 1.1.0 shape. For 0.3.x/0.4.0 `ips[].version`
 * is checked against the address family and dropped. Keys the version does not
 * define are ignored. Failures are code 6 naming the field; an unsupported
 * version is code 1.
 */
export const decodeResult = (json: unknown, version?: string): Effect.Effect<Result, CniError> => {
  const v = version ?? versionOf(json)
  if (v === undefined) return Effect.fail(decodeFailure("failed to decode result: cniVersion: missing"))
  if (!isSupportedVersion(v)) return Effect.fail(incompatibleVersion(v))
  const fail = failDecode(v)
  if (compareVersions(v, "1.0.0") < 0) {
    return Schema.decodeUnknownEffect(ResultV04)(json).pipe(
      Effect.mapError(fail),
      Effect.map((w): Result => {
        const out: Mutable<Result> = { cniVersion: v }
        if (w.interfaces !== undefined) out.interfaces = w.interfaces
        if (w.ips !== undefined) {
          out.ips = w.ips.map(({ version: _version, ...ip }) => ip)
        }
        if (w.routes !== undefined) out.routes = w.routes
        if (w.dns !== undefined) out.dns = w.dns
        return out
      })
    )
  }
  const schema = compareVersions(v, "1.1.0") < 0 ? ResultV100 : ResultV110
  return Schema.decodeUnknownEffect(schema)(json).pipe(
    Effect.mapError(fail),
    Effect.map((w): Result => ({ ...w, cniVersion: v }))
  )
}

const pickDefined = <T extends object, K extends keyof T>(obj: T, keys: ReadonlyArray<K>): Partial<Pick<T, K>> => {
  const out: Partial<Pick<T, K>> = {}
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k]
  return out
}

const isEmptyDns = (dns: typeof Dns.Type): boolean =>
  dns.nameservers === undefined && dns.domain === undefined && dns.search === undefined && dns.options === undefined

/**
 * Encodes a canonical result as the wire form of `version`: adds
 * `ips[].version` below 1.0.0; drops route mtu/advmss/priority/table/scope and
 * interface mtu/socketPath/pciID below 1.1.0; sets `cniVersion`; never emits
 * null or undefined keys. An unsupported version is code 1; an invalid result
 * (a plugin bug) is code 100.
 */
export const encodeResult = (result: Result, version: string): Effect.Effect<unknown, CniError> => {
  if (!isSupportedVersion(version)) return Effect.fail(incompatibleVersion(version))
  return Schema.decodeUnknownEffect(Result)(result).pipe(
    Effect.mapError((e) => {
      const { path, message } = describeSchemaError(e)
      return internalError(`plugin produced an invalid result: ${path === "" ? message : `${path}: ${message}`}`)
    }),
    Effect.map((r) => {
      const below100 = compareVersions(version, "1.0.0") < 0
      const below110 = compareVersions(version, "1.1.0") < 0
      const out: Record<string, unknown> = { cniVersion: version }
      if (r.interfaces !== undefined) {
        out.interfaces = r.interfaces.map((i) =>
          below110
            ? { name: i.name, ...pickDefined(i, ["mac", "sandbox"]) }
            : { name: i.name, ...pickDefined(i, ["mac", "mtu", "sandbox", "socketPath", "pciID"]) }
        )
      }
      if (r.ips !== undefined) {
        out.ips = r.ips.map((ip) => ({
          ...(below100 ? { version: String(cidrFamily(ip.address) ?? 4) } : {}),
          ...pickDefined(ip, ["interface"]),
          address: ip.address,
          ...pickDefined(ip, ["gateway"])
        }))
      }
      if (r.routes !== undefined) {
        out.routes = r.routes.map((rt) =>
          below110
            ? { dst: rt.dst, ...pickDefined(rt, ["gw"]) }
            : { dst: rt.dst, ...pickDefined(rt, ["gw", "mtu", "advmss", "priority", "table", "scope"]) }
        )
      }
      if (r.dns !== undefined && !isEmptyDns(r.dns)) out.dns = { ...r.dns }
      return out
    })
  )
}

/** Re-expresses a result JSON (decoded in its own cniVersion) in another version's wire form. */
export const convertResult = (json: unknown, toVersion: string): Effect.Effect<unknown, CniError> =>
  decodeResult(json).pipe(Effect.flatMap((r) => encodeResult(r, toVersion)))
