/**
 * host-gw: a route per peer subnet via the peer's underlay address, as flannel's host-gw
 * and kindnet do. Works only between nodes on one L2 segment (the peer's address must be
 * on-link); a peer that is not is reported, never routed through some other gateway.
 *
 * The routes are the agent's own: added with rtm_protocol ROUTE_PROTOCOL_TSCNI, so a
 * reconcile finds exactly them again (every route of that protocol is the agent's, every
 * other is someone else's and never touched), removes those no peer wants any more (a
 * node gone while this agent was down: flannel leaves them, flannel#2554) and adds what is
 * missing (a route deleted by hand). Nothing is flushed: a restart changes nothing that was
 * right.
 */
import { Effect } from "effect"
import { Backend, type BackendError, HOST_NETNS, isNotFound, ROUTE_PROTOCOL_TSCNI, type Route } from "@tscni/backend"
import { formatCidr, parseIp } from "@tscni/ip"
import type { SubnetClaim } from "./leases.ts"

/** A peer host-gw cannot reach, and why. */
export interface UnreachablePeer {
  readonly node: string
  readonly publicIp: string
  readonly why: string
}

export interface HostGwPlan {
  readonly routes: ReadonlyArray<Route>
  readonly unreachable: ReadonlyArray<UnreachablePeer>
}

/**
 * The routes this node wants: each other node's IPv4 subnet via its public address, out of
 * the underlay interface, if that address is on-link there. IPv6 subnets are reported, not
 * routed (that needs IPv6 underlay addresses, which leases do not carry yet; `auto` and
 * `vxlan` carry them over the overlay).
 */
export const planHostGw = (claims: ReadonlyArray<SubnetClaim>, self: string, underlay: string) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const routes: Array<Route> = []
    const unreachable: Array<UnreachablePeer> = []
    const seen = new Map<string, boolean>()
    for (const claim of claims) {
      const publicIp = claim.record.publicIp
      if (claim.record.node === self || publicIp === undefined || parseIp(publicIp)?.family !== 4) continue
      if (claim.subnet.ip.family === 6) {
        unreachable.push({ node: claim.record.node, publicIp, why: `${formatCidr(claim.subnet)}: host-gw routes IPv4 subnets only` })
        continue
      }
      let onLink = seen.get(publicIp)
      if (onLink === undefined) {
        // the kernel's own answer: a directly connected address has no gateway on its route
        const route = yield* backend.lookupRoute(HOST_NETNS, publicIp)
        onLink = route !== undefined && route.gateway === undefined && route.link === underlay
        seen.set(publicIp, onLink)
      }
      if (onLink) routes.push({ dst: formatCidr(claim.subnet), gateway: publicIp, link: underlay })
      else unreachable.push({ node: claim.record.node, publicIp, why: `${publicIp} is not on ${underlay}'s L2 segment` })
    }
    return { routes, unreachable } satisfies HostGwPlan
  })

const routeKey = (route: Route): string => `${route.dst} ${route.gateway ?? ""} ${route.link ?? ""}`

/** The changes a reconcile made. */
export interface RouteChanges {
  readonly added: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
}

/**
 * Makes the node's agent-owned routes (protocol ROUTE_PROTOCOL_TSCNI, main table) exactly
 * `wanted`: deletes the others of that protocol, adds the missing ones. A route someone
 * else owns to the same destination makes the add fail with AlreadyExists: reported, and
 * theirs is left alone.
 */
export const reconcileRoutes = (wanted: ReadonlyArray<Route>): Effect.Effect<RouteChanges, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const ours = (yield* backend.listRoutes(HOST_NETNS)).filter((route) => route.protocol === ROUTE_PROTOCOL_TSCNI && route.table === undefined)
    const wantedKeys = new Set(wanted.map(routeKey))
    const present = new Set(ours.map(routeKey))
    const removed: Array<string> = []
    for (const route of ours) {
      if (wantedKeys.has(routeKey(route))) continue
      yield* backend.deleteRoute(HOST_NETNS, route).pipe(Effect.catchIf(isNotFound, () => Effect.void))
      removed.push(routeKey(route).trim())
    }
    const added: Array<string> = []
    for (const route of wanted) {
      if (present.has(routeKey(route))) continue
      yield* backend.addRoute(HOST_NETNS, route, { protocol: ROUTE_PROTOCOL_TSCNI })
      added.push(routeKey(route).trim())
    }
    return { added, removed }
  })
