/**
 * static's configuration as the reference reads it: `ipam.addresses`, `ipam.routes`,
 * `ipam.dns`; CNI_ARGS `IP=` (comma-separated CIDRs, appended) and `GATEWAY=` (set on the
 * addresses whose network holds it); `args.cni.ips` and then `runtimeConfig.ips` each
 * replace the whole address list when present. Errors are code 7 naming the field (code 4
 * for CNI_ARGS).
 */
import { Effect, Schema } from "effect"
import { type Cidr, contains, formatCidr, formatIp, type Ip, parseCidr, parseIp } from "@tscni/ip"
import type { PluginRequest } from "@tscni/skel"
import { type CniError, Dns, invalidConfig } from "@tscni/spec"
import { decodeField, decodeRoutes, type Route } from "../decode.ts"
import { argsCniIps, cniArgsList, cniArgValue, type RequestedText, runtimeConfigIps } from "../requestedIps.ts"

/** One address static hands out; host bits are kept (`10.0.0.5/24` is address 10.0.0.5). */
export interface StaticAddress {
  readonly address: Cidr
  readonly gateway: Ip | undefined
  readonly field: string
}

/** static's validated configuration. */
export interface StaticConfig {
  readonly addresses: ReadonlyArray<StaticAddress>
  readonly routes: ReadonlyArray<Route>
  readonly dns: typeof Dns.Type | undefined
}

const AddressConf = Schema.Struct({
  address: Schema.String,
  gateway: Schema.optionalKey(Schema.String)
})

const StaticSection = Schema.Struct({
  addresses: Schema.optionalKey(Schema.Array(AddressConf)),
  routes: Schema.optionalKey(Schema.Unknown),
  dns: Schema.optionalKey(Dns)
})

const cidrOf = (entry: RequestedText): Effect.Effect<Cidr, CniError> => {
  const cidr = parseCidr(entry.text)
  return cidr === undefined
    ? Effect.fail(entry.fail(`expected an address in CIDR notation, got ${JSON.stringify(entry.text)}`))
    : Effect.succeed(cidr)
}

const fromRequested = (entries: ReadonlyArray<RequestedText>) =>
  Effect.forEach(entries, (entry) =>
    cidrOf(entry).pipe(Effect.map((address): StaticAddress => ({ address, gateway: undefined, field: entry.field }))))

/** Decodes and validates static's config and request arguments, before any result is built. */
export const loadStaticConfig = (request: PluginRequest): Effect.Effect<StaticConfig, CniError> =>
  Effect.gen(function*() {
    const conf = request.conf
    if (conf.ipam === undefined) return yield* invalidConfig("ipam", "missing")
    const ipam = yield* decodeField(StaticSection, conf.ipam, "ipam")
    let addresses: Array<StaticAddress> = []
    for (const [i, entry] of (ipam.addresses ?? []).entries()) {
      const field = `ipam.addresses[${i}]`
      const address = parseCidr(entry.address)
      if (address === undefined) {
        return yield* invalidConfig(`${field}.address`, `expected an address in CIDR notation, got ${JSON.stringify(entry.address)}`)
      }
      let gateway: Ip | undefined
      if (entry.gateway !== undefined && entry.gateway !== "") {
        gateway = parseIp(entry.gateway)
        if (gateway === undefined) return yield* invalidConfig(`${field}.gateway`, `not an IP address: ${JSON.stringify(entry.gateway)}`)
        if (gateway.family !== address.ip.family) {
          return yield* invalidConfig(`${field}.gateway`, `${formatIp(gateway)} is not of the same family as ${formatCidr(address)}`)
        }
      }
      addresses.push({ address, gateway, field })
    }

    addresses.push(...(yield* fromRequested(cniArgsList(cniArgValue(request.env.args, "IP"), "IP"))))
    for (const entry of cniArgsList(cniArgValue(request.env.args, "GATEWAY"), "GATEWAY")) {
      const gateway = parseIp(entry.text)
      if (gateway === undefined) return yield* entry.fail(`not an IP address: ${JSON.stringify(entry.text)}`)
      addresses = addresses.map((address) => (contains(address.address, gateway) ? { ...address, gateway } : address))
    }
    const fromArgs = yield* argsCniIps(conf)
    if (fromArgs.length > 0) addresses = [...(yield* fromRequested(fromArgs))]
    const fromRuntime = yield* runtimeConfigIps(conf)
    if (fromRuntime.length > 0) addresses = [...(yield* fromRequested(fromRuntime))]

    return { addresses, routes: yield* decodeRoutes(ipam.routes, "ipam.routes"), dns: ipam.dns }
  })
