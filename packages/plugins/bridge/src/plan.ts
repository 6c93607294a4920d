import { Effect, Schema } from "effect"
import { Route } from "@tscni/backend"
import { parseCidr } from "@tscni/ip"
import { type CniError, invalidConfig, type Result, RouteEntry } from "@tscni/spec"

/** What the IPAM result means for this pod, worked out before it is applied. */
export const AddressPlan = Schema.Struct({
  /** the pod interface's addresses, CIDR form */
  addresses: Schema.Array(Schema.String),
  /** routes to add in the pod (besides the connected ones the kernel adds) */
  routes: Schema.Array(Route),
  /** gateway addresses the bridge must carry (isGateway), with the pod network's prefix */
  gateways: Schema.Array(Schema.String),
  /** the result's routes, with the default routes isDefaultGateway added */
  resultRoutes: Schema.Array(RouteEntry)
})
export type AddressPlan = typeof AddressPlan.Type

const DEFAULT_DST = { 4: "0.0.0.0/0", 6: "::/0" } as const

/**
 * From the IPAM result to what the pod gets. Routes without a gateway go through the
 * family's gateway (as the reference plugins configure them); `isDefaultGateway` adds a
 * default route per family unless IPAM already gave one through the same gateway.
 */
export const planAddresses = (
  result: Result | undefined,
  options: { readonly ifname: string; readonly isGateway: boolean; readonly isDefaultGateway: boolean }
): Effect.Effect<AddressPlan, CniError> => {
  const ips = result?.ips ?? []
  const addresses: Array<string> = []
  const gateways: Array<string> = []
  const gatewayOf: Partial<Record<4 | 6, string>> = {}
  for (const ip of ips) {
    const cidr = parseCidr(ip.address)
    if (!cidr) return Effect.fail(invalidConfig("ipam result", `'${ip.address}' is not an address in CIDR form`))
    addresses.push(ip.address)
    if (ip.gateway !== undefined) {
      gatewayOf[cidr.ip.family] ??= ip.gateway
      if (options.isGateway) gateways.push(`${ip.gateway}/${cidr.prefix}`)
    }
  }
  const resultRoutes = [...(result?.routes ?? [])]
  if (options.isDefaultGateway) {
    for (const family of [4, 6] as const) {
      const gw = gatewayOf[family]
      if (gw === undefined) continue
      const index = resultRoutes.findIndex((route) => route.dst === DEFAULT_DST[family])
      const existing = resultRoutes[index]
      if (existing === undefined) resultRoutes.push({ dst: DEFAULT_DST[family], gw })
      else if (existing.gw === undefined) resultRoutes[index] = { ...existing, gw } // it goes via the gateway
      else if (existing.gw !== undefined && existing.gw !== gw) {
        return Effect.fail(
          invalidConfig("isDefaultGateway", `IPAM already routes ${existing.dst} via ${existing.gw}, not via the gateway ${gw}`)
        )
      }
    }
  }
  const routes: Array<Route> = []
  for (const route of resultRoutes) {
    const dst = parseCidr(route.dst)
    if (!dst) return Effect.fail(invalidConfig("routes", `'${route.dst}' is not a CIDR`))
    const gateway = route.gw ?? gatewayOf[dst.ip.family]
    routes.push({
      dst: route.dst,
      link: options.ifname,
      ...(gateway !== undefined ? { gateway } : {}),
      ...(route.priority !== undefined ? { priority: route.priority } : {}),
      ...(route.mtu !== undefined ? { mtu: route.mtu } : {}),
      ...(route.advmss !== undefined ? { advmss: route.advmss } : {}),
      ...(route.table !== undefined ? { table: route.table } : {})
    })
  }
  return Effect.succeed({ addresses, routes, gateways: [...new Set(gateways)], resultRoutes })
}
