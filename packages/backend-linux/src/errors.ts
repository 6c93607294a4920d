import { BackendError, type BackendErrorReason } from "@tscni/backend"
import { errnoName } from "./libc.ts"

/** Kernel errno → the Backend's typed reason. */
export const reasonForErrno = (code: number): BackendErrorReason => {
  switch (errnoName(code)) {
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
    reason: reasonForErrno(code),
    errno: errnoName(code),
    message: `${operation}: ${detail ? detail + ": " : ""}${errnoName(code)}`
  })

/** Thrown inside synchronous netlink code; converted to a failure at the Effect boundary. */
export class KernelCallFailed extends Error {
  constructor(readonly error: BackendError) {
    super(error.message)
  }
}
