import { BackendError, isMissingNetns } from "@tscni/backend"
import { CheckFailed, Pipeline } from "@tscni/engine"
import { CniError, ErrorCode, internalError, unknownContainer } from "@tscni/spec"

/**
 * Maps the typed errors of the layers below to CNI errors at the edge, so plugins can let
 * BackendError and CheckFailed flow. Returns undefined for anything it does not know.
 */
export const knownErrorToCni = (error: unknown): CniError | undefined => {
  if (error instanceof CniError) return error
  if (error instanceof BackendError) {
    // The namespace named by CNI_NETNS is not there (or is not a network namespace).
    if (isMissingNetns(error)) return unknownContainer(error.message)
    return new CniError({ code: ErrorCode.IoFailure, msg: error.message, details: `reason: ${error.reason}` })
  }
  if (error instanceof Pipeline.UndoIncomplete) {
    const details = error.failures.map((failure) => `${failure.step}: ${failure.message}`).join("; ")
    return new CniError({ code: ErrorCode.IoFailure, msg: "some of the teardown failed", details })
  }
  if (error instanceof CheckFailed) return internalError(`CHECK failed at ${error.step}: ${error.message}`)
  return undefined
}
