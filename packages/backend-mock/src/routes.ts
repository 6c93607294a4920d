import type { AddRouteOptions, BackendError, NetnsPath, Route } from "@tscni/backend"
import { Effect } from "effect"
import {
  type Cidr,
  contains,
  formatCidr,
  formatIp,
  hasHostBits,
  type Ip,
  isLinkLocal6,
  networkOf,
  parseCidr,
  parseIp,
  sameIp
} from "@tscni/ip"
import {
  fail,
  type KernelState,
  type LinkState,
  linkName,
  MAIN_TABLE,
  type NetnsState,
  requireLink,
  requireNetns,
  type RouteState
} from "./state.ts"

/** The kernel's default metric: 0 for IPv4, 1024 for IPv6 routes added by userspace. */
const defaultPriority = (family: 4 | 6): number => (family === 4 ? 0 : 1024)

/**
 * A route as the kernel reports it: always with its nexthop device, IPv4 without a zero
 * metric, IPv6 always with one and always scope universe (IPv6 routes have no scope),
 * the table only when it is not main, the protocol only when it is not boot.
 */
export const toRoute = (ns: NetnsState, r: RouteState): Route => {
  const v4 = r.dst.ip.family === 4
  return {
    dst: formatCidr(r.dst),
    ...(r.gateway === undefined ? {} : { gateway: formatIp(r.gateway) }),
    link: linkName(ns, r.linkIndex),
    scope: v4 ? r.scope : "universe",
    ...(v4 && r.priority === 0 ? {} : { priority: r.priority }),
    ...(r.table === MAIN_TABLE ? {} : { table: r.table }),
    ...(r.mtu === undefined ? {} : { mtu: r.mtu }),
    ...(r.advmss === undefined ? {} : { advmss: r.advmss }),
    ...(r.src === undefined ? {} : { src: formatIp(r.src) }),
    ...(r.protocol === "boot" ? {} : { protocol: r.protocol }),
    ...(r.onlink ? { onlink: true } : {})
  }
}

/** Routes in a stable order: family, table, destination, metric. */
export const routesInOrder = (ns: NetnsState): Array<RouteState> =>
  [...ns.routes].sort(
    (a, b) =>
      a.dst.ip.family - b.dst.ip.family ||
      a.table - b.table ||
      (a.dst.ip.value < b.dst.ip.value ? -1 : a.dst.ip.value > b.dst.ip.value ? 1 : 0) ||
      a.dst.prefix - b.dst.prefix ||
      a.priority - b.priority ||
      a.linkIndex - b.linkIndex
  )

interface ParsedRoute {
  readonly dst: Cidr
  readonly gateway: Ip | undefined
  readonly link: LinkState | undefined
  readonly table: number
  readonly src: Ip | undefined
}

const parseRoute = (ns: NetnsState, operation: string, route: Route): Effect.Effect<ParsedRoute, BackendError> =>
  Effect.gen(function* () {
    const invalid = (message: string) => fail(operation, "Invalid", message, "EINVAL")
    const dst = parseCidr(route.dst)
    if (dst === undefined) return yield* invalid(`invalid route destination ${JSON.stringify(route.dst)}`)
    // IPv4 refuses host bits ("Invalid prefix for given prefix length"); IPv6 masks them
    if (dst.ip.family === 4 && hasHostBits(dst)) {
      return yield* invalid(`invalid prefix for given prefix length: ${route.dst}`)
    }
    const family = dst.ip.family
    const ipOf = (text: string | undefined, what: string): Effect.Effect<Ip | undefined, BackendError> => {
      if (text === undefined) return Effect.succeed(undefined)
      const ip = parseIp(text)
      return ip === undefined || ip.family !== family
        ? invalid(`invalid ${what} ${JSON.stringify(text)} for ${route.dst}`)
        : Effect.succeed(ip)
    }
    const gateway = yield* ipOf(route.gateway, "gateway")
    const src = yield* ipOf(route.src, "source address")
    const table = route.table ?? MAIN_TABLE
    for (const [what, value] of [
      ["table", route.table],
      ["priority", route.priority],
      ["mtu", route.mtu],
      ["advmss", route.advmss]
    ] as const) {
      if (value !== undefined && !(Number.isInteger(value) && value >= (what === "priority" ? 0 : 1))) {
        return yield* invalid(`invalid ${what} ${value}`)
      }
    }
    const link = route.link === undefined ? undefined : yield* requireLink(ns, operation, route.link)
    return { dst: networkOf(dst), gateway, link, table, src }
  })

/**
 * Finds the link a gateway is reachable through: the longest-prefix route without a
 * gateway (a connected or `dev`-only route, scope link for IPv4) that contains it, or a
 * local address equal to it; restricted to `via` when the route names a link.
 */
const resolveGateway = (
  ns: NetnsState,
  gateway: Ip,
  table: number,
  via: LinkState | undefined
): number | undefined => {
  const local = ns.addresses.find(
    (a) =>
      sameIp(a.cidr.ip, gateway) &&
      ns.links.get(a.linkIndex)?.up === true &&
      (via === undefined || via.index === a.linkIndex)
  )
  if (local !== undefined) return local.linkIndex
  const candidates = ns.routes.filter(
    (r) =>
      (r.table === table || r.table === MAIN_TABLE) &&
      r.gateway === undefined &&
      (gateway.family === 6 || r.scope !== "universe") &&
      contains(r.dst, gateway) &&
      ns.links.get(r.linkIndex)?.up === true &&
      (via === undefined || via.index === r.linkIndex)
  )
  const best = candidates.sort((a, b) => b.dst.prefix - a.dst.prefix)[0]
  return best?.linkIndex
}

const matches = (r: RouteState, parsed: ParsedRoute, route: Route): boolean =>
  r.table === parsed.table &&
  r.dst.prefix === parsed.dst.prefix &&
  sameIp(r.dst.ip, parsed.dst.ip) &&
  (route.priority === undefined || r.priority === route.priority) &&
  (parsed.gateway === undefined || (r.gateway !== undefined && sameIp(r.gateway, parsed.gateway))) &&
  (parsed.link === undefined || r.linkIndex === parsed.link.index) &&
  (parsed.src === undefined || (r.src !== undefined && sameIp(r.src, parsed.src))) &&
  (route.scope === undefined || r.dst.ip.family === 6 || r.scope === route.scope)

/** Route operations of the mock, with the kernel's nexthop checks. */
export const routeOperations = (state: KernelState) => ({
  listRoutes: (netns: NetnsPath): Effect.Effect<ReadonlyArray<Route>, BackendError> =>
    Effect.map(requireNetns(state, "listRoutes", netns), (ns) => routesInOrder(ns).map((r) => toRoute(ns, r))),

  // as the kernel's FIB lookup: a local address is not a unicast route (undefined, as the
  // Linux backend answers for it); otherwise the main table's longest prefix, lowest metric
  lookupRoute: (netns: NetnsPath, address: string): Effect.Effect<Route | undefined, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "lookupRoute", netns)
      const ip = parseIp(address)
      if (ip === undefined) return yield* fail("lookupRoute", "Invalid", `'${address}' is not an IP address`, "EINVAL")
      if (ns.addresses.some((a) => sameIp(a.cidr.ip, ip))) return undefined
      const best = ns.routes
        .filter((r) => r.table === MAIN_TABLE && r.dst.ip.family === ip.family && contains(r.dst, ip))
        .sort((a, b) => b.dst.prefix - a.dst.prefix || a.priority - b.priority)[0]
      if (best === undefined) return undefined
      const link = ns.links.get(best.linkIndex)
      return {
        dst: `${formatIp(ip)}/${ip.family === 4 ? 32 : 128}`,
        ...(best.gateway !== undefined ? { gateway: formatIp(best.gateway) } : {}),
        ...(link !== undefined ? { link: link.name } : {})
      }
    }),

  addRoute: (netns: NetnsPath, route: Route, options?: AddRouteOptions): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "addRoute"
      const ns = yield* requireNetns(state, op, netns)
      const parsed = yield* parseRoute(ns, op, route)
      const { dst, gateway, link, table, src } = parsed
      const family = dst.ip.family
      if (src !== undefined && !ns.addresses.some((a) => sameIp(a.cidr.ip, src))) {
        return yield* fail(op, "Invalid", `invalid prefsrc ${route.src}: not a local address`, "EINVAL")
      }
      const scope = route.scope ?? (gateway === undefined ? "link" : "universe")
      let linkIndex: number
      if (link !== undefined && (gateway === undefined || scope === "link" || isLinkLocal6(gateway) || route.onlink === true)) {
        // a dev route or an on-link gateway: IPv4 wants the device up (ENETDOWN)
        if (family === 4 && !link.up) {
          return yield* fail(op, "Invalid", `device ${link.name} for nexthop is not up`, "ENETDOWN")
        }
        linkIndex = link.index
      } else if (gateway !== undefined) {
        const resolved = resolveGateway(ns, gateway, table, link)
        if (resolved === undefined) {
          const message = `gateway ${route.gateway} is unreachable: network is unreachable`
          return yield* fail(op, "Invalid", message, "ENETUNREACH")
        }
        linkIndex = resolved
      } else {
        return yield* fail(op, "Invalid", `route to ${route.dst} names neither a gateway nor a link`, "EINVAL")
      }
      const priority = route.priority ?? defaultPriority(family)
      // append (NLM_F_APPEND) only refuses an identical nexthop; without it any route to
      // the same destination, table and metric is a clash (NLM_F_EXCL)
      const sameNexthop = (r: (typeof ns.routes)[number]) =>
        r.linkIndex === linkIndex &&
        (r.gateway === undefined ? gateway === undefined : gateway !== undefined && sameIp(r.gateway, gateway))
      const clash = ns.routes.some(
        (r) =>
          r.table === table && r.priority === priority && r.dst.prefix === dst.prefix && sameIp(r.dst.ip, dst.ip) &&
          (options?.append !== true || sameNexthop(r))
      )
      if (clash) {
        const message = `a route to ${formatCidr(dst)} with metric ${priority} exists`
        return yield* fail(op, "AlreadyExists", message, "EEXIST")
      }
      ns.routes.push({
        dst,
        gateway,
        linkIndex,
        scope,
        priority,
        table,
        mtu: route.mtu,
        advmss: route.advmss,
        src,
        protocol: options?.protocol ?? "boot",
        onlink: route.onlink === true && gateway !== undefined && link !== undefined
      })
    }),

  deleteRoute: (netns: NetnsPath, route: Route): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "deleteRoute"
      const ns = yield* requireNetns(state, op, netns)
      const parsed = yield* parseRoute(ns, op, route)
      const found = routesInOrder(ns).find((r) => matches(r, parsed, route))
      if (found === undefined) return yield* fail(op, "NotFound", `no such route to ${route.dst}`, "ESRCH")
      ns.routes = ns.routes.filter((r) => r !== found)
    })
})
