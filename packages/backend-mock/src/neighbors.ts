import type { BackendError, FdbEntry, NetnsPath, Neighbor } from "@tscni/backend"
import { formatIp, type Ip, parseIp, parseMac, sameIp } from "@tscni/ip"
import { Effect } from "effect"
import { fail, type KernelState, requireLink, requireNetns } from "./state.ts"

const macOf = (operation: string, mac: string): Effect.Effect<string, BackendError> => {
  const parsed = parseMac(mac)
  return parsed === undefined ? fail(operation, "Invalid", `'${mac}' is not a MAC address`, "EINVAL") : Effect.succeed(parsed)
}

const ipOf = (operation: string, text: string): Effect.Effect<Ip, BackendError> => {
  const ip = parseIp(text)
  return ip === undefined ? fail(operation, "Invalid", `'${text}' is not an IP address`, "EINVAL") : Effect.succeed(ip)
}

/**
 * Neighbour entries and VXLAN forwarding entries of the mock, as the kernel keeps them: per
 * link; set replaces the entry for the same address (neighbour) or MAC (FDB); FDB entries
 * only on VXLAN devices; both go with their link.
 */
export const neighborOperations = (state: KernelState) => ({
  listNeighbors: (netns: NetnsPath, name: string): Effect.Effect<ReadonlyArray<Neighbor>, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "listNeighbors", netns)
      const link = yield* requireLink(ns, "listNeighbors", name)
      return ns.neighbors
        .filter((n) => n.linkIndex === link.index)
        .map((n) => ({ link: link.name, ip: formatIp(n.ip), mac: n.mac, permanent: n.permanent }))
    }),

  setNeighbor: (netns: NetnsPath, entry: { readonly link: string; readonly ip: string; readonly mac: string }): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "setNeighbor"
      const ns = yield* requireNetns(state, op, netns)
      const link = yield* requireLink(ns, op, entry.link)
      const ip = yield* ipOf(op, entry.ip)
      const mac = yield* macOf(op, entry.mac)
      ns.neighbors = [...ns.neighbors.filter((n) => !(n.linkIndex === link.index && sameIp(n.ip, ip))), { linkIndex: link.index, ip, mac, permanent: true }]
    }),

  deleteNeighbor: (netns: NetnsPath, entry: { readonly link: string; readonly ip: string }): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "deleteNeighbor"
      const ns = yield* requireNetns(state, op, netns)
      const link = yield* requireLink(ns, op, entry.link)
      const ip = yield* ipOf(op, entry.ip)
      const found = ns.neighbors.find((n) => n.linkIndex === link.index && sameIp(n.ip, ip))
      if (found === undefined) return yield* fail(op, "NotFound", `no neighbour ${entry.ip} on ${entry.link}`, "ENOENT")
      ns.neighbors = ns.neighbors.filter((n) => n !== found)
    }),

  listFdb: (netns: NetnsPath, name: string): Effect.Effect<ReadonlyArray<FdbEntry>, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "listFdb", netns)
      const link = yield* requireLink(ns, "listFdb", name)
      return ns.fdb.filter((f) => f.linkIndex === link.index).map((f) => ({ link: link.name, mac: f.mac, dst: formatIp(f.dst) }))
    }),

  setFdb: (netns: NetnsPath, entry: FdbEntry): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "setFdb"
      const ns = yield* requireNetns(state, op, netns)
      const link = yield* requireLink(ns, op, entry.link)
      if (link.kind !== "vxlan") return yield* fail(op, "Unsupported", `${entry.link} is not a VXLAN device`, "EOPNOTSUPP")
      const mac = yield* macOf(op, entry.mac)
      const dst = yield* ipOf(op, entry.dst)
      ns.fdb = [...ns.fdb.filter((f) => !(f.linkIndex === link.index && f.mac === mac)), { linkIndex: link.index, mac, dst }]
    }),

  deleteFdb: (netns: NetnsPath, entry: FdbEntry): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "deleteFdb"
      const ns = yield* requireNetns(state, op, netns)
      const link = yield* requireLink(ns, op, entry.link)
      const mac = yield* macOf(op, entry.mac)
      const dst = yield* ipOf(op, entry.dst)
      const found = ns.fdb.find((f) => f.linkIndex === link.index && f.mac === mac && sameIp(f.dst, dst))
      if (found === undefined) return yield* fail(op, "NotFound", `no forwarding entry ${entry.mac} dst ${entry.dst} on ${entry.link}`, "ENOENT")
      ns.fdb = ns.fdb.filter((f) => f !== found)
    })
})
