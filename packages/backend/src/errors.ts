import { Schema } from "effect"

/**
 * Why a kernel operation failed, independent of the backend that ran it. Steps branch on
 * the reason (e.g. undo treats `NotFound` as "already gone"), never on message text.
 */
export const BackendErrorReason = Schema.Literals([
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "Busy",
  "Invalid",
  "Unsupported",
  "Injected",
  "Unknown"
])
export type BackendErrorReason = typeof BackendErrorReason.Type

/** The one error every Backend operation can fail with. */
export class BackendError extends Schema.TaggedError<BackendError>()("BackendError", {
  /** The Backend operation that failed, e.g. `createVeth`. */
  operation: Schema.String,
  reason: BackendErrorReason,
  message: Schema.String,
  /** errno name from the kernel when there is one (EEXIST, ENODEV, …). */
  errno: Schema.optionalKey(Schema.String),
  /** set when the failure concerns the network namespace itself (it is missing or not one) */
  netns: Schema.optionalKey(Schema.Literal(true))
}) {}

/** The namespace named by the request does not exist or is not a network namespace. */
export const isMissingNetns = (error: BackendError): boolean => error.netns === true

/**
 * Lets undo treat "already gone" as success; use with isMissingNetns to tell a missing
 * object from a missing namespace.
 */
export const isNotFound = (error: BackendError): boolean => error.reason === "NotFound"
