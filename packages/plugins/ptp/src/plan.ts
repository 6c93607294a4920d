import { Effect, Schema } from "effect"
import { Route } from "@tscni/backend"
import { bits, type Cidr, formatCidr, formatIp, type IpFamily, networkOf, parseCidr, parseIp, sameIp } from "@tscni/ip"
import { type CniError, invalidConfig, type Result } from "@tscni/spec"

/**
 * What the IPAM result means for a routed pod, worked out before it is applied. The pod
 * keeps each address with the prefix IPAM gave, but reaches every other address of that
 * network through its gateway: the kernel's route to the network on the pod's interface is
 * replaced by a route to the gateway on the link and one to the network via the gateway.
 * The host end of the veth carries each gateway (/32, /128) and a host route to each pod
 * address. No bridge: the host routes between pods.
 */
export const PtpPlan = Schema.Struct({
  /** the pod interface's addresses, CIDR form, as IPAM gave them */
  addresses: Schema.Array(Schema.String),
  /** the routes the kernel adds for those addresses on the pod's interface, which go */
  connected: Schema.Array(Route),
  /** the pod's routes, in the order they can be added: each gateway on the link, each network via its gateway, then IPAM's routes */
  routes: Schema.Array(Route),
  /** the host veth's addresses: each gateway, /32 or /128 */
  gateways: Schema.Array(Schema.String),
  /** the host's routes to the pod: each address, /32 or /128, on the host veth */
  hostRoutes: Schema.Array(Route)
})
export type PtpPlan = typeof PtpPlan.Type

const MAIN_TABLE = 254

/** Adds to a list once: routes by table, destination, gateway and link; anything else by itself. */
const adder = <A>(key: (value: A) => string) => {
  const seen = new Set<string>()
  const list: Array<A> = []
  return {
    list,
    add: (value: A) => {
      const k = key(value)
      if (seen.has(k)) return
      seen.add(k)
      list.push(value)
    }
  }
}
const routeKey = (route: Route): string => {
  const dst = parseCidr(route.dst)
  const gateway = route.gateway === undefined ? undefined : parseIp(route.gateway)
  return [route.table ?? MAIN_TABLE, dst ? formatCidr(networkOf(dst)) : route.dst, gateway ? formatIp(gateway) : route.gateway ?? "", route.link ?? ""].join(" ")
}

const refused = (problem: string) => Effect.fail(invalidConfig("ipam result", problem))

/**
 * The kernel's route to an address's network (`proto kernel`): IPv4 `network dev X scope
 * link src ADDRESS` (none for a /32), IPv6 `network dev X metric 256` (a /128 included).
 */
const connectedRoute = (cidr: Cidr, ifname: string): Route | undefined => {
  const dst = formatCidr(networkOf(cidr))
  if (cidr.ip.family === 6) return { dst, link: ifname, priority: 256 }
  return cidr.prefix === 32 ? undefined : { dst, link: ifname, scope: "link", src: formatIp(cidr.ip) }
}

/**
 * From the IPAM result to what the pod and the host get. Each address needs a gateway of its
 * family (it is where the pod's traffic goes); IPAM routes without a gateway go through the
 * family's first one, as the reference configures them.
 */
export const planPtp = (
  result: Result | undefined,
  names: { readonly ifname: string; readonly hostVeth: string }
): Effect.Effect<PtpPlan, CniError> =>
  Effect.gen(function*() {
    const { ifname, hostVeth } = names
    const ips = result?.ips ?? []
    if (ips.length === 0) return yield* refused("the IPAM plugin returned no IP address")
    const addresses: Array<string> = []
    const connected = adder(routeKey)
    const onLink = adder(routeKey)
    const viaGateway = adder(routeKey)
    const gateways = adder((cidr: string) => cidr)
    const hostRoutes = adder(routeKey)
    const gatewayOf: Partial<Record<IpFamily, string>> = {}
    for (const ip of ips) {
      const cidr = parseCidr(ip.address)
      if (cidr === undefined) return yield* refused(`'${ip.address}' is not an address in CIDR form`)
      if (ip.gateway === undefined) return yield* refused(`${ip.address} has no gateway: ptp routes the pod through its gateway`)
      const gw = parseIp(ip.gateway)
      if (gw === undefined || gw.family !== cidr.ip.family) return yield* refused(`the gateway ${ip.gateway} of ${ip.address} is not an IPv${cidr.ip.family} address`)
      if (sameIp(gw, cidr.ip)) return yield* refused(`the gateway of ${ip.address} is the pod's own address`)
      const full = bits(cidr.ip.family)
      const address = formatIp(cidr.ip)
      const gateway = formatIp(gw)
      addresses.push(ip.address)
      gatewayOf[cidr.ip.family] ??= gateway
      const kernels = connectedRoute(cidr, ifname)
      if (kernels !== undefined) connected.add(kernels)
      onLink.add({ dst: `${gateway}/${full}`, link: ifname, scope: "link", src: address })
      viaGateway.add({ dst: formatCidr(networkOf(cidr)), gateway, link: ifname, src: address })
      gateways.add(`${gateway}/${full}`)
      hostRoutes.add({ dst: `${address}/${full}`, link: hostVeth, scope: "host" })
    }
    const routes = adder(routeKey)
    for (const route of [...onLink.list, ...viaGateway.list]) routes.add(route)
    for (const route of result?.routes ?? []) {
      const dst = parseCidr(route.dst)
      if (dst === undefined) return yield* refused(`'${route.dst}' is not a CIDR`)
      const gateway = route.gw ?? gatewayOf[dst.ip.family]
      routes.add({
        dst: route.dst,
        link: ifname,
        ...(gateway !== undefined ? { gateway } : {}),
        ...(route.priority !== undefined ? { priority: route.priority } : {}),
        ...(route.mtu !== undefined ? { mtu: route.mtu } : {}),
        ...(route.advmss !== undefined ? { advmss: route.advmss } : {}),
        ...(route.table !== undefined ? { table: route.table } : {})
      })
    }
    return { addresses, connected: connected.list, routes: routes.list, gateways: gateways.list, hostRoutes: hostRoutes.list }
  })
