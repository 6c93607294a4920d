import { sysctlKey } from "@tscni/backend"
import { contains, networkOf, parseCidr, sameIp } from "@tscni/ip"
import {
  type AddressState,
  type KernelState,
  type LinkState,
  MAIN_TABLE,
  type NetnsState,
  removeLinkSysctls,
  type RouteState
} from "./state.ts"

/**
 * The route the kernel adds by itself (`proto kernel`) for an address on an up link:
 * IPv4 gets `subnet dev X scope link src ADDR` (none for /32 or loopback, those live only
 * in the local table, which is not modelled); IPv6 gets `prefix dev X metric 256`.
 */
const connectedRouteFor = (ns: NetnsState, address: AddressState): RouteState | undefined => {
  const link = ns.links.get(address.linkIndex)
  if (link === undefined || !link.up) return undefined
  if (address.cidr.ip.family === 4) {
    if (link.kind === "loopback" || address.cidr.prefix === 32) return undefined
    return {
      dst: networkOf(address.cidr),
      gateway: undefined,
      linkIndex: address.linkIndex,
      scope: "link",
      priority: 0,
      table: MAIN_TABLE,
      mtu: undefined,
      advmss: undefined,
      src: address.cidr.ip,
      protocol: "kernel",
      onlink: false
    }
  }
  return {
    dst: networkOf(address.cidr),
    gateway: undefined,
    linkIndex: address.linkIndex,
    scope: "universe",
    priority: 256,
    table: MAIN_TABLE,
    mtu: undefined,
    advmss: undefined,
    src: undefined,
    protocol: "kernel",
    onlink: false
  }
}

const sameConnected = (a: RouteState, b: RouteState): boolean =>
  a.table === b.table &&
  a.priority === b.priority &&
  a.linkIndex === b.linkIndex &&
  a.gateway === undefined &&
  b.gateway === undefined &&
  a.dst.prefix === b.dst.prefix &&
  sameIp(a.dst.ip, b.dst.ip)

/** Adds the connected route of `address` unless the link is down or it is already there. */
export const addConnectedRoute = (ns: NetnsState, address: AddressState): void => {
  const route = connectedRouteFor(ns, address)
  if (route === undefined || ns.routes.some((r) => sameConnected(r, route))) return
  ns.routes.push(route)
}

/**
 * Called after `address` was removed: drops its connected route unless another address on
 * the same link still covers that subnet (then it only moves the IPv4 `src` over).
 */
export const removeConnectedRoute = (ns: NetnsState, address: AddressState): void => {
  const route = connectedRouteFor(ns, address)
  if (route === undefined) return
  const remaining = ns.addresses.find(
    (a) =>
      a.linkIndex === address.linkIndex &&
      a.cidr.prefix === address.cidr.prefix &&
      contains(route.dst, a.cidr.ip)
  )
  ns.routes = ns.routes.flatMap((r) => {
    if (!sameConnected(r, route)) return [r]
    if (remaining === undefined) return []
    return [r.src !== undefined && sameIp(r.src, address.cidr.ip) ? { ...r, src: remaining.cidr.ip } : r]
  })
}

const LOOPBACK_ADDRESSES = ["127.0.0.1/8", "::1/128"].flatMap((text) => {
  const cidr = parseCidr(text)
  return cidr === undefined ? [] : [cidr]
})

/**
 * Brings a link up. Loopback gets 127.0.0.1/8 (if it is not there yet) and ::1/128;
 * every address of the link gets its connected route back.
 */
export const bringUp = (ns: NetnsState, link: LinkState): void => {
  if (link.up) return
  link.up = true
  if (link.kind === "loopback") {
    for (const cidr of LOOPBACK_ADDRESSES) {
      const ipv6Disabled = ns.sysctls.get(sysctlKey("net", "ipv6", "conf", link.name, "disable_ipv6")) === "1"
      if (cidr.ip.family === 6 && ipv6Disabled) continue
      const present = ns.addresses.some((a) => a.linkIndex === link.index && sameIp(a.cidr.ip, cidr.ip))
      if (!present) ns.addresses.push({ linkIndex: link.index, cidr })
    }
  }
  for (const address of ns.addresses) if (address.linkIndex === link.index) addConnectedRoute(ns, address)
}

/**
 * Takes a link down as the kernel does: every route through it is flushed (both families,
 * not only connected ones) and its IPv6 addresses are removed (keep_addr_on_down=0);
 * IPv4 addresses stay.
 */
export const bringDown = (ns: NetnsState, link: LinkState): void => {
  if (!link.up) return
  link.up = false
  ns.routes = ns.routes.filter((r) => r.linkIndex !== link.index)
  ns.addresses = ns.addresses.filter((a) => a.linkIndex !== link.index || a.cidr.ip.family === 4)
}

/** Drops every IPv6 address and route of a link (writing disable_ipv6=1 does this). */
export const dropIpv6 = (ns: NetnsState, link: LinkState): void => {
  ns.addresses = ns.addresses.filter((a) => a.linkIndex !== link.index || a.cidr.ip.family === 4)
  ns.routes = ns.routes.filter((r) => r.linkIndex !== link.index || r.dst.ip.family === 4)
}

/** Releases a port from its bridge; its port VLANs go with the membership. */
export const releasePort = (link: LinkState): void => {
  if (link.master !== undefined) link.vlans = []
  link.master = undefined
  link.bridgePort = undefined
}

/**
 * Removes everything that hangs off a link in its namespace (addresses, routes, qdiscs,
 * redirects from or to it, bridge membership, ports if it is a bridge, its sysctls), as
 * unregistering it does. The link itself stays in `ns.links`; the caller removes or moves it.
 */
export const detachLink = (ns: NetnsState, link: LinkState): void => {
  link.up = false
  ns.addresses = ns.addresses.filter((a) => a.linkIndex !== link.index)
  ns.routes = ns.routes.filter((r) => r.linkIndex !== link.index)
  ns.neighbors = ns.neighbors.filter((n) => n.linkIndex !== link.index)
  ns.fdb = ns.fdb.filter((f) => f.linkIndex !== link.index)
  ns.qdiscs = ns.qdiscs.filter((q) => q.linkIndex !== link.index)
  ns.redirects = ns.redirects.filter((r) => r.linkIndex !== link.index && r.toLinkIndex !== link.index)
  releasePort(link)
  if (link.kind === "bridge") {
    for (const port of ns.links.values()) if (port.master === link.index) releasePort(port)
  }
  removeLinkSysctls(ns, link.name)
}

/** Deletes a link; a veth takes its peer with it, wherever the peer lives. */
export const destroyLink = (state: KernelState, ns: NetnsState, link: LinkState): void => {
  detachLink(ns, link)
  ns.links.delete(link.index)
  if (link.peer === undefined) return
  const peerNs = state.namespaces.get(link.peer.netns)
  const peer = peerNs?.links.get(link.peer.index)
  if (peerNs === undefined || peer === undefined) return
  peer.peer = undefined
  detachLink(peerNs, peer)
  peerNs.links.delete(peer.index)
}
