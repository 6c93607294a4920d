import { Schema } from "effect"

/** Why an install operation failed; steps and reports branch on this, never on the text. */
export const InstallErrorReason = Schema.Literals([
  "NotFound",
  "AlreadyExists",
  "NotEmpty",
  "PermissionDenied",
  "ReadOnly",
  "Invalid",
  "Changed",
  "VerifyFailed",
  "Usage",
  "Injected",
  "Unknown"
])
export type InstallErrorReason = typeof InstallErrorReason.Type

/**
 * Every failure of the installer: a file operation, a plugin that does not answer VERSION,
 * a bad option or conflist. `path` names the file it concerns (empty when none does).
 */
export class InstallError extends Schema.TaggedError<InstallError>()("InstallError", {
  operation: Schema.String,
  path: Schema.String,
  reason: InstallErrorReason,
  message: Schema.String
}) {}

const REASON_BY_ERRNO: Record<string, InstallErrorReason> = {
  ENOENT: "NotFound",
  EEXIST: "AlreadyExists",
  ENOTEMPTY: "NotEmpty",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  EROFS: "ReadOnly",
  ENOTDIR: "Invalid",
  EISDIR: "Invalid",
  EXDEV: "Invalid"
}

const errnoCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

/** Turns what node:fs threw into an InstallError naming the operation and the path. */
export const fromSystemError = (operation: string, path: string) => (error: unknown): InstallError => {
  const code = errnoCode(error)
  const text = error instanceof Error ? error.message : String(error)
  return new InstallError({
    operation,
    path,
    reason: (code !== undefined ? REASON_BY_ERRNO[code] : undefined) ?? "Unknown",
    message: code !== undefined && !text.includes(code) ? `${code}: ${text}` : text
  })
}

/** A bad option, source or conflist: found before anything is changed. */
export const usageError = (message: string, path = ""): InstallError =>
  new InstallError({ operation: "validate", path, reason: "Usage", message })
