import { type BackendError, type ConntrackFilter, conntrackPortProblem, type NetnsPath } from "@tscni/backend"
import { Effect } from "effect"
import { fail, type KernelState, requireNetns } from "./state.ts"

/**
 * The mock carries no traffic, so it tracks no connections: deleting finds nothing. The
 * namespace and the filter are still checked as the kernel would.
 */
export const conntrackOperations = (state: KernelState) => ({
  deleteConntrack: (netns: NetnsPath, filter: ConntrackFilter): Effect.Effect<number, BackendError> =>
    Effect.gen(function*() {
      yield* requireNetns(state, "deleteConntrack", netns)
      const problem = conntrackPortProblem(filter.dstPort)
      if (problem !== undefined) return yield* fail("deleteConntrack", "Invalid", `deleteConntrack: ${problem}`, "EINVAL")
      return 0
    })
})
