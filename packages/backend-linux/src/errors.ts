import { BackendError, type BackendErrorReason } from "@tscni/backend"
import { errnoName } from "./libc.ts"

/** Operations where EADDRNOTAVAIL is about a MAC the link cannot take, not a missing address. */
const MAC_OPERATIONS = new Set(["setLink", "createLink", "createVeth"])

/**
 * Kernel errno → the Backend's typed reason. EADDRNOTAVAIL means "no such address" when
 * deleting one, but "not a usable address" when setting or creating with a MAC. ELOOP is
 * the bridge's "cannot enslave a bridge to a bridge".
 */
const reasonForErrno = (code: number, operation = ""): BackendErrorReason => {
  const name = errnoName(code)
  if (name === "EADDRNOTAVAIL" && MAC_OPERATIONS.has(operation)) return "Invalid"
  switch (name) {
    case "EEXIST":
      return "AlreadyExists"
    case "ENODEV":
    case "ENOENT":
    case "ESRCH":
    case "EADDRNOTAVAIL":
      return "NotFound"
    case "EPERM":
    case "EACCES":
      return "PermissionDenied"
    case "EBUSY":
      return "Busy"
    case "EINVAL":
    case "ERANGE":
    case "ELOOP":
    case "ENETUNREACH":
      return "Invalid"
    case "EOPNOTSUPP":
      return "Unsupported"
    default:
      return "Unknown"
  }
}

/** A BackendError for a failed kernel call. */
export const kernelError = (operation: string, code: number, detail?: string): BackendError =>
  new BackendError({
    operation,
    reason: reasonForErrno(code, operation),
    errno: errnoName(code),
    message: `${operation}: ${detail ? detail + ": " : ""}${errnoName(code)}`
  })

/** Thrown inside synchronous netlink code; converted to a failure at the Effect boundary. */
export class KernelCallFailed extends Error {
  constructor(readonly error: BackendError) {
    super(error.message)
  }
}
