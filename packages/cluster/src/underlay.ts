/**
 * The node's underlay: the interface its peers reach it through (`--iface`, else that of the
 * default route), its address (`--public-ip`, else the interface's first global IPv4
 * address) and its MTU, read through the Backend (rtnetlink), nothing changed.
 */
import { Effect, Schema } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { formatIp, isLinkLocal6, parseCidr, parseIp } from "@tscni/ip"

export interface Underlay {
  readonly iface: string
  readonly publicIp: string
  /** the interface's first global IPv6 address (or `--public-ipv6`): host-gw routes IPv6 subnets via it */
  readonly publicIpv6: string | undefined
  readonly mtu: number
}

/** The underlay cannot be found: no default route, no such interface, no address on it. */
export class UnderlayError extends Schema.TaggedError<UnderlayError>()("UnderlayError", {
  message: Schema.String
}) {}

const DEFAULT_ROUTE = "0.0.0.0/0"

/** Finds the underlay in the agent's own network namespace. */
export const findUnderlay = (wanted: { readonly iface?: string | undefined; readonly publicIp?: string | undefined; readonly publicIpv6?: string | undefined }) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const problem = (message: string) => new UnderlayError({ message })
    let iface = wanted.iface
    if (iface === undefined) {
      const routes = yield* backend.listRoutes(HOST_NETNS).pipe(Effect.mapError((error) => problem(`listing routes: ${error.message}`)))
      const defaults = routes
        .filter((route) => route.dst === DEFAULT_ROUTE && (route.table ?? 254) === 254 && route.link !== undefined)
        .sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0))
      iface = defaults[0]?.link
      if (iface === undefined) return yield* problem("no IPv4 default route to take the underlay interface from: set --iface")
    }
    const link = yield* backend.getLink(HOST_NETNS, iface).pipe(Effect.mapError((error) => problem(`--iface ${iface}: ${error.message}`)))
    const addresses = yield* backend.listAddresses(HOST_NETNS, link.name).pipe(
      Effect.mapError((error) => problem(`listing the addresses of ${link.name}: ${error.message}`))
    )
    let publicIp = wanted.publicIp
    if (publicIp === undefined) {
      // the first global IPv4 address (not loopback, not link-local)
      const global = addresses
        .map((address) => parseCidr(address.cidr)?.ip)
        .find((ip) => ip?.family === 4 && ip.value >> 24n !== 127n && ip.value >> 16n !== 0xa9fen)
      if (global === undefined) return yield* problem(`${link.name} has no IPv4 address to publish: set --public-ip`)
      publicIp = formatIp(global)
    } else if (parseIp(publicIp)?.family !== 4) return yield* problem(`--public-ip: '${publicIp}' is not an IPv4 address`)
    let publicIpv6 = wanted.publicIpv6
    if (publicIpv6 === undefined) {
      // the first global IPv6 address (not link-local)
      const global6 = addresses.map((address) => parseCidr(address.cidr)?.ip).find((ip) => ip?.family === 6 && !isLinkLocal6(ip))
      publicIpv6 = global6 === undefined ? undefined : formatIp(global6)
    } else if (parseIp(publicIpv6)?.family !== 6) return yield* problem(`--public-ipv6: '${publicIpv6}' is not an IPv6 address`)
    return { iface: link.name, publicIp, publicIpv6, mtu: link.mtu } satisfies Underlay
  })
