import type { LinkInfo, Route, RouteProtocol, RouteScope } from "@tscni/backend"
import { kernelError, KernelCallFailed } from "../errors.ts"
import { formatIp, fromBytes, networkOf, parseCidr, parseIp, toBytes } from "@tscni/ip"
import { addressFamilyCode, attrU32, AttributeWriter, decodeAttributes, ipFamilyOfCode, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL } from "../netlink/message.ts"
import type { RouteSocket } from "../netlink/socket.ts"

/** rtnetlink message type adding a route; also the type of each entry in a route dump. */
export const RTM_NEWROUTE = 24
/** rtnetlink message type deleting a route. */
export const RTM_DELROUTE = 25
/** rtnetlink message type dumping routes. */
export const RTM_GETROUTE = 26

const RTA_DST = 1
const RTA_OIF = 4
const RTA_GATEWAY = 5
const RTA_PRIORITY = 6
const RTA_PREFSRC = 7
const RTA_METRICS = 8
const RTA_MULTIPATH = 9
const RTA_TABLE = 15
const RTNEXTHOP_LENGTH = 8
const RTAX_MTU = 2
const RTAX_ADVMSS = 8

const RTMSG_LENGTH = 12
const RT_TABLE_MAIN = 254
const RT_TABLE_LOCAL = 255
const RTPROT_KERNEL = 2
const RTPROT_BOOT = 3
const RTPROT_STATIC = 4
const RTN_UNICAST = 1
const RTNH_F_ONLINK = 4

const SCOPES: Record<RouteScope, number> = { universe: 0, link: 253, host: 254 }
const scopeName = (value: number): RouteScope | undefined =>
  (Object.keys(SCOPES) as Array<RouteScope>).find((name) => SCOPES[name] === value)

/** rtm_protocol as the Backend names it; boot (the default) is left out by the listing. */
const protocolName = (value: number): RouteProtocol =>
  value === RTPROT_KERNEL ? "kernel" : value === RTPROT_BOOT ? "boot" : value === RTPROT_STATIC ? "static" : value

/** The nexthops of RTA_MULTIPATH: struct rtnexthop (len, flags, hops, ifindex) + attributes each. */
const decodeNexthops = (data: Uint8Array): Array<{ oif: number | undefined; gateway: Uint8Array | undefined }> => {
  const nexthops: Array<{ oif: number | undefined; gateway: Uint8Array | undefined }> = []
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  let offset = 0
  while (offset + RTNEXTHOP_LENGTH <= data.byteLength) {
    const length = view.getUint16(offset, true)
    if (length < RTNEXTHOP_LENGTH || offset + length > data.byteLength) break
    const attributes = decodeAttributes(data.subarray(offset + RTNEXTHOP_LENGTH, offset + length))
    nexthops.push({ oif: view.getInt32(offset + 4, true), gateway: attributes.get(RTA_GATEWAY) })
    offset += (length + 3) & ~3
  }
  return nexthops
}

/** struct rtmsg */
const rtmsg = (family: number, dstLength: number, table: number, scope: number, type: number): Uint8Array => {
  const header = new Uint8Array(RTMSG_LENGTH)
  const view = new DataView(header.buffer)
  view.setUint8(0, family)
  view.setUint8(1, dstLength)
  view.setUint8(4, table < 256 ? table : 0) // RT_TABLE_UNSPEC: the table is in RTA_TABLE
  view.setUint8(5, RTPROT_BOOT)
  view.setUint8(6, scope)
  view.setUint8(7, type)
  return header
}

/**
 * Routes of every table but `local` (the kernel's own: addresses, broadcast, multicast),
 * as `ip route show table all` minus local. Multicast and other non-unicast routes skipped.
 */
export const listRoutes = (socket: RouteSocket, links: ReadonlyArray<LinkInfo>): Array<Route> => {
  const names = new Map(links.map((link) => [link.index, link.name]))
  const routes: Array<Route> = []
  for (const message of socket.dump("listRoutes", RTM_GETROUTE, new Uint8Array(RTMSG_LENGTH))) {
    if (message.type !== RTM_NEWROUTE) continue
    const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength)
    const family = ipFamilyOfCode(view.getUint8(0))
    if (family === undefined || view.getUint8(7) !== RTN_UNICAST) continue
    const attributes = decodeAttributes(message.payload.subarray(RTMSG_LENGTH))
    const table = attrU32(attributes, RTA_TABLE) ?? view.getUint8(4)
    if (table === RT_TABLE_LOCAL) continue
    const dstBytes = attributes.get(RTA_DST) ?? new Uint8Array(family === 4 ? 4 : 16)
    const firstGateway = attributes.get(RTA_GATEWAY)
    const oif = attrU32(attributes, RTA_OIF)
    const priority = attrU32(attributes, RTA_PRIORITY)
    const src = attributes.get(RTA_PREFSRC)
    const scope = scopeName(view.getUint8(6))
    const protocol = protocolName(view.getUint8(5))
    const onlink = (view.getUint32(8, true) & RTNH_F_ONLINK) !== 0
    const metrics = attributes.get(RTA_METRICS)
    const metricAttributes = metrics ? decodeAttributes(metrics) : undefined
    const mtu = metricAttributes ? attrU32(metricAttributes, RTAX_MTU) : undefined
    const advmss = metricAttributes ? attrU32(metricAttributes, RTAX_ADVMSS) : undefined
    // a multipath route (IPv6 routes appended through another gateway) is one route per nexthop
    const multipath = attributes.get(RTA_MULTIPATH)
    const nexthops = multipath ? decodeNexthops(multipath) : [{ oif, gateway: firstGateway }]
    for (const nexthop of nexthops) {
      const link = nexthop.oif !== undefined ? names.get(nexthop.oif) : undefined
      const gateway = nexthop.gateway
      routes.push({
        dst: `${formatIp(fromBytes(family, dstBytes))}/${view.getUint8(1)}`,
        ...(gateway ? { gateway: formatIp(fromBytes(family, gateway)) } : {}),
        ...(link !== undefined ? { link } : {}),
        ...(scope !== undefined && scope !== "universe" ? { scope } : {}),
        ...(priority !== undefined && priority !== 0 ? { priority } : {}),
        ...(table !== RT_TABLE_MAIN ? { table } : {}),
        ...(mtu !== undefined ? { mtu } : {}),
        ...(advmss !== undefined ? { advmss } : {}),
        ...(src ? { src: formatIp(fromBytes(family, src)) } : {}),
        ...(protocol !== "boot" ? { protocol } : {}),
        ...(onlink ? { onlink: true } : {})
      })
    }
  }
  return routes
}

const invalid = (operation: string, problem: string) => new KernelCallFailed(kernelError(operation, 22, problem))

/** Builds the rtmsg and attributes for adding or deleting `route`. */
const routeRequest = (operation: string, route: Route, linkIndex: number | undefined) => {
  const dst = parseCidr(route.dst)
  if (!dst) throw invalid(operation, `route dst '${route.dst}' is not a CIDR`)
  const family = dst.ip.family
  const familyCode = addressFamilyCode(family)
  const table = route.table ?? RT_TABLE_MAIN
  // a gateway-less route through a link is on-link: scope link, as `ip route add … dev X` does
  const defaultScope = route.gateway === undefined && linkIndex !== undefined && family === 4 ? "link" : "universe"
  const scope = SCOPES[route.scope ?? defaultScope]
  const attributes = new AttributeWriter()
  if (dst.prefix > 0) attributes.bytes(RTA_DST, toBytes(networkOf(dst).ip))
  if (route.gateway !== undefined) {
    const gateway = parseIp(route.gateway)
    if (!gateway || gateway.family !== family) throw invalid(operation, `route gateway '${route.gateway}' does not match ${route.dst}`)
    attributes.bytes(RTA_GATEWAY, toBytes(gateway))
  }
  if (linkIndex !== undefined) attributes.u32(RTA_OIF, linkIndex)
  if (route.priority !== undefined) attributes.u32(RTA_PRIORITY, route.priority)
  if (route.src !== undefined) {
    const src = parseIp(route.src)
    if (!src) throw invalid(operation, `route src '${route.src}' is not an address`)
    attributes.bytes(RTA_PREFSRC, toBytes(src))
  }
  if (table >= 256) attributes.u32(RTA_TABLE, table)
  if (route.mtu !== undefined || route.advmss !== undefined) {
    attributes.nested(RTA_METRICS, (metrics) => {
      if (route.mtu !== undefined) metrics.u32(RTAX_MTU, route.mtu)
      if (route.advmss !== undefined) metrics.u32(RTAX_ADVMSS, route.advmss)
    })
  }
  const header = rtmsg(familyCode, dst.prefix, table, scope, RTN_UNICAST)
  if (route.onlink === true) new DataView(header.buffer).setUint32(8, RTNH_F_ONLINK, true)
  return { header, attributes: attributes.finish() }
}

const describe = (route: Route): string =>
  [route.dst, route.gateway && `via ${route.gateway}`, route.link && `dev ${route.link}`].filter(Boolean).join(" ")

/**
 * Adds a route, failing if it exists unless `append`, which adds another next hop to the
 * same destination instead.
 */
export const addRoute = (socket: RouteSocket, route: Route, linkIndex: number | undefined, append = false, protocol = RTPROT_BOOT): void => {
  const { header, attributes } = routeRequest("addRoute", route, linkIndex)
  header[5] = protocol
  const flags = NLM_F_CREATE | (append ? NLM_F_APPEND : NLM_F_EXCL)
  socket.request("addRoute", RTM_NEWROUTE, flags, header, attributes, describe(route))
}

/** Deletes the route matching destination, gateway and link, whatever its protocol and scope. */
export const deleteRoute = (socket: RouteSocket, route: Route, linkIndex: number | undefined): void => {
  const { header, attributes } = routeRequest("deleteRoute", route, linkIndex)
  // as iproute2 does on delete: protocol, scope ("nowhere") and type 0 match any
  header[5] = 0
  header[6] = 255
  header[7] = 0
  socket.request("deleteRoute", RTM_DELROUTE, 0, header, attributes, describe(route))
}

const RTM_F_LOOKUP_TABLE = 0x1000

/**
 * The route the kernel would send a packet to `address` by (a FIB lookup, as `ip route get`
 * without cache details): its destination, link and gateway. One request, whatever the
 * number of routes or links; undefined when the address is unreachable. `nameOf` turns the
 * output ifindex into a name.
 */
export const lookupRoute = (socket: RouteSocket, address: string, nameOf: (index: number) => string): Route | undefined => {
  const ip = parseIp(address)
  if (ip === undefined) throw new KernelCallFailed(kernelError("lookupRoute", 22, `'${address}' is not an IP address`))
  const family = addressFamilyCode(ip.family)
  const header = rtmsg(family, ip.family === 4 ? 32 : 128, 0, 0, 0)
  new DataView(header.buffer).setUint32(8, RTM_F_LOOKUP_TABLE, true)
  const attributes = new AttributeWriter().bytes(RTA_DST, toBytes(ip)).finish()
  let replies
  try {
    replies = socket.request("lookupRoute", RTM_GETROUTE, 0, header, attributes, address)
  } catch (error) {
    // ENETUNREACH / EHOSTUNREACH: no route
    if (error instanceof KernelCallFailed && (error.error.errno === "ENETUNREACH" || error.error.errno === "EHOSTUNREACH")) return undefined
    throw error
  }
  const reply = replies.find((message) => message.type === RTM_NEWROUTE)
  if (reply === undefined) return undefined
  const view = new DataView(reply.payload.buffer, reply.payload.byteOffset, reply.payload.byteLength)
  if (view.getUint8(7) !== RTN_UNICAST) return undefined
  const found = decodeAttributes(reply.payload.subarray(RTMSG_LENGTH))
  const oif = attrU32(found, RTA_OIF)
  const gateway = found.get(RTA_GATEWAY)
  const table = attrU32(found, RTA_TABLE) ?? view.getUint8(4)
  return {
    dst: `${formatIp(ip)}/${ip.family === 4 ? 32 : 128}`,
    ...(gateway ? { gateway: formatIp(fromBytes(ip.family, gateway)) } : {}),
    ...(oif !== undefined ? { link: nameOf(oif) } : {}),
    ...(table !== RT_TABLE_MAIN ? { table } : {})
  }
}
