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
  /** the peer subnet host-gw cannot route */
  readonly subnet: string
  readonly publicIp: string
  readonly why: string
}

export interface HostGwPlan {
  readonly routes: ReadonlyArray<Route>
  readonly unreachable: ReadonlyArray<UnreachablePeer>
}

/**
 * The routes this node wants: each other node's subnet via its underlay address of that
 * family (`publicIp`, `publicIpv6`), out of the underlay interface, if that address is
 * on-link there. A subnet that cannot be routed so is reported (auto carries it over VXLAN).
 */
export const planHostGw = (claims: ReadonlyArray<SubnetClaim>, self: string, underlay: string) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const routes: Array<Route> = []
    const unreachable: Array<UnreachablePeer> = []
    const seen = new Map<string, boolean>()
    for (const claim of claims) {
      const family = claim.subnet.ip.family
      // an IPv6 subnet goes via the peer's IPv6 underlay address, an IPv4 one via its IPv4 address
      const gateway = family === 4 ? claim.record.publicIp : claim.record.publicIpv6
      if (claim.record.node === self || claim.record.publicIp === undefined) continue
      const subnet = formatCidr(claim.subnet)
      if (gateway === undefined || parseIp(gateway)?.family !== family) {
        unreachable.push({ node: claim.record.node, subnet, publicIp: claim.record.publicIp, why: `${subnet}: the node publishes no IPv${family} underlay address` })
        continue
      }
      let onLink = seen.get(gateway)
      if (onLink === undefined) {
        // the kernel's own answer: a directly connected address has no gateway on its route
        const route = yield* backend.lookupRoute(HOST_NETNS, gateway)
        onLink = route !== undefined && route.gateway === undefined && route.link === underlay
        seen.set(gateway, onLink)
      }
      if (onLink) routes.push({ dst: subnet, gateway, link: underlay })
      else unreachable.push({ node: claim.record.node, subnet, publicIp: gateway, why: `${gateway} is not on ${underlay}'s L2 segment` })
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
