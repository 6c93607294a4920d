import { type BackendError, type BridgeVlan, type NetnsPath, vlanIdProblem } from "@tscni/backend"
import { Effect } from "effect"
import { VLAN_FILTERING_UNSUPPORTED } from "./links.ts"
import { fail, type KernelState, type LinkState, requireLink, requireNetns } from "./state.ts"

const validateVid = (operation: string, vid: number): Effect.Effect<void, BackendError> => {
  const problem = vlanIdProblem(vid)
  return problem === undefined ? Effect.void : fail(operation, "Invalid", problem, "EINVAL")
}

/** A link that can hold bridge VLANs: a bridge (its own, `self`) or a port of one. */
const carriesVlans = (link: LinkState): boolean => link.kind === "bridge" || link.master !== undefined

/**
 * Bridge VLAN operations of the mock. With VLAN support, a bridge and each new port start
 * with VLAN 1 pvid untagged, adding an existing vid replaces its flags, and a port has at
 * most one pvid. Without it, no link ever has VLANs and adding one is Unsupported.
 */
export const vlanOperations = (state: KernelState) => ({
  listBridgeVlans: (netns: NetnsPath, name: string): Effect.Effect<ReadonlyArray<BridgeVlan>, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "listBridgeVlans", netns)
      const link = yield* requireLink(ns, "listBridgeVlans", name)
      return [...link.vlans].sort((a, b) => a.vid - b.vid).map((v) => ({ ...v }))
    }),

  addBridgeVlan: (netns: NetnsPath, name: string, vlan: BridgeVlan): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "addBridgeVlan"
      const ns = yield* requireNetns(state, op, netns)
      const link = yield* requireLink(ns, op, name)
      yield* validateVid(op, vlan.vid)
      if (!carriesVlans(link)) {
        return yield* fail(op, "Invalid", `${name} is neither a bridge nor a bridge port`, "EOPNOTSUPP")
      }
      if (state.vlanFiltering === "unsupported") {
        return yield* fail(op, "Unsupported", VLAN_FILTERING_UNSUPPORTED, "EOPNOTSUPP")
      }
      const others = link.vlans
        .filter((v) => v.vid !== vlan.vid)
        .map((v) => (vlan.pvid && v.pvid ? { ...v, pvid: false } : v))
      link.vlans = [...others, { vid: vlan.vid, pvid: vlan.pvid, untagged: vlan.untagged }]
    }),

  deleteBridgeVlan: (netns: NetnsPath, name: string, vid: number): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "deleteBridgeVlan"
      const ns = yield* requireNetns(state, op, netns)
      const link = yield* requireLink(ns, op, name)
      yield* validateVid(op, vid)
      if (!link.vlans.some((v) => v.vid === vid)) {
        return yield* fail(op, "NotFound", `${name} has no VLAN ${vid}`, "ENOENT")
      }
      link.vlans = link.vlans.filter((v) => v.vid !== vid)
    })
})
