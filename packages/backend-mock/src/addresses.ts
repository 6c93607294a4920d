import { type AddressInfo, type BackendError, type NetnsPath, sysctlKey } from "@tscni/backend"
import { Effect } from "effect"
import { type Cidr, formatCidr, parseCidr, sameIp } from "@tscni/ip"
import { addConnectedRoute, removeConnectedRoute } from "./lifecycle.ts"
import {
  type AddressState,
  fail,
  type KernelState,
  linkName,
  type NetnsState,
  requireLink,
  requireNetns
} from "./state.ts"

const requireCidr = (operation: string, text: string): Effect.Effect<Cidr, BackendError> => {
  const cidr = parseCidr(text)
  return cidr === undefined
    ? fail(operation, "Invalid", `invalid address ${JSON.stringify(text)} (expected ADDRESS/PREFIX)`, "EINVAL")
    : Effect.succeed(cidr)
}

/** IPv4 identifies an address by address+prefix, IPv6 by address alone (per link). */
const sameAddress = (a: AddressState, linkIndex: number, cidr: Cidr): boolean =>
  a.linkIndex === linkIndex && sameIp(a.cidr.ip, cidr.ip) && (cidr.ip.family === 6 || a.cidr.prefix === cidr.prefix)

/** Addresses as the kernel dumps them: IPv4 first, then IPv6, each by link index. */
export const addressInfos = (ns: NetnsState): Array<AddressInfo> =>
  [...ns.addresses]
    .map((a, order) => ({ a, order }))
    .sort((x, y) => x.a.cidr.ip.family - y.a.cidr.ip.family || x.a.linkIndex - y.a.linkIndex || x.order - y.order)
    .map(({ a }) => ({
      netns: ns.path,
      link: linkName(ns, a.linkIndex),
      linkIndex: a.linkIndex,
      family: a.cidr.ip.family,
      cidr: formatCidr(a.cidr)
    }))

/** Address operations of the mock; an address always needs its link. */
export const addressOperations = (state: KernelState) => ({
  listAddresses: (netns: NetnsPath, link?: string): Effect.Effect<ReadonlyArray<AddressInfo>, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "listAddresses", netns)
      if (link === undefined) return addressInfos(ns)
      const found = yield* requireLink(ns, "listAddresses", link)
      return addressInfos(ns).filter((a) => a.linkIndex === found.index)
    }),

  addAddress: (netns: NetnsPath, link: string, cidr: string): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "addAddress"
      const ns = yield* requireNetns(state, op, netns)
      const target = yield* requireLink(ns, op, link)
      const parsed = yield* requireCidr(op, cidr)
      if (parsed.ip.family === 6 && ns.sysctls.get(sysctlKey("net", "ipv6", "conf", target.name, "disable_ipv6")) === "1") {
        return yield* fail(op, "PermissionDenied", `IPv6 is disabled on ${target.name}`, "EACCES")
      }
      if (ns.addresses.some((a) => sameAddress(a, target.index, parsed))) {
        return yield* fail(op, "AlreadyExists", `${cidr} is already on ${target.name}`, "EEXIST")
      }
      const address: AddressState = { linkIndex: target.index, cidr: parsed }
      ns.addresses.push(address)
      addConnectedRoute(ns, address)
    }),

  deleteAddress: (netns: NetnsPath, link: string, cidr: string): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "deleteAddress"
      const ns = yield* requireNetns(state, op, netns)
      const target = yield* requireLink(ns, op, link)
      const parsed = yield* requireCidr(op, cidr)
      const existing = ns.addresses.find((a) => sameAddress(a, target.index, parsed) && a.cidr.prefix === parsed.prefix)
      if (existing === undefined) {
        return yield* fail(op, "NotFound", `${cidr} is not on ${target.name}`, "EADDRNOTAVAIL")
      }
      ns.addresses = ns.addresses.filter((a) => a !== existing)
      removeConnectedRoute(ns, existing)
    })
})
