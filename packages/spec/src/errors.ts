/**
 * The CNI error model: well-known codes, one error class, constructors that
 * name the offending field/variable, and the JSON a plugin prints on failure.
 */
import { Schema } from "effect"
import { SUPPORTED_VERSIONS } from "./versions.ts"

export { describeSchemaError } from "./schema-error.ts"

/** Well-known CNI error codes (SPEC "Error" section); 100 is tscni's internal failure code. */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  NotAvailable: 50,
  NotAvailableDamaged: 51,
  Internal: 100
} as const

/** The one error type every tscni plugin fails with; maps 1:1 onto the CNI error JSON. */
export class CniError extends Schema.TaggedError<CniError>()("CniError", {
  code: Schema.Number,
  msg: Schema.String,
  details: Schema.optionalKey(Schema.String)
}) {}

const make = (code: number, msg: string, details?: string): CniError =>
  details === undefined ? new CniError({ code, msg }) : new CniError({ code, msg, details })

const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  const json = JSON.stringify(value)
  return json === undefined ? String(value) : json
}

/** Code 1: the config's cniVersion is not one this plugin speaks. */
export const incompatibleVersion = (version: string, supported: ReadonlyArray<string> = SUPPORTED_VERSIONS): CniError =>
  make(
    ErrorCode.IncompatibleVersion,
    `incompatible CNI versions: config is ${JSON.stringify(version)}, plugin supports [${supported.join(", ")}]`
  )

/** Code 2: a config key holds a value this plugin does not support (the spec wants key and value named). */
export const unsupportedField = (field: string, value: unknown): CniError =>
  make(ErrorCode.UnsupportedField, `${field}: unsupported value ${show(value)}`)

/** Code 3: the container is unknown or gone (the runtime need not clean up). */
export const unknownContainer = (msg: string): CniError => make(ErrorCode.UnknownContainer, msg)

/** Code 4: a CNI_* environment variable is missing or invalid; the message names it. */
export const invalidEnvironment = (variable: string, problem: string): CniError =>
  make(ErrorCode.InvalidEnvironment, `${variable}: ${problem}`)

/** Code 5: reading or writing something (stdin, a file, a netlink socket) failed. */
export const ioFailure = (msg: string, details?: string): CniError => make(ErrorCode.IoFailure, msg, details)

/** Code 6: content (stdin JSON, a prevResult, a delegate's output) could not be decoded. */
export const decodeFailure = (msg: string, details?: string): CniError => make(ErrorCode.DecodeFailure, msg, details)

/** Code 7: the network config is invalid; the message names the field path. */
export const invalidConfig = (field: string, problem: string): CniError =>
  make(ErrorCode.InvalidConfig, field === "" ? problem : `${field}: ${problem}`)

/** Code 11: a transient condition; the runtime should retry later. */
export const tryAgainLater = (msg: string): CniError => make(ErrorCode.TryAgainLater, msg)

/** Code 50 (or 51 when existing containers may be damaged): the STATUS verb's "not ready". */
export const notAvailable = (msg: string, damaged = false): CniError =>
  make(damaged ? ErrorCode.NotAvailableDamaged : ErrorCode.NotAvailable, msg)

/** Code 100: a failure that fits no well-known code (a bug or an unexpected system state). */
export const internalError = (msg: string, details?: string): CniError => make(ErrorCode.Internal, msg, details)

/** The error JSON printed on stdout for a failed invocation (no `details` key when absent). */
export const errorResult = (
  error: CniError,
  cniVersion: string
): { cniVersion: string; code: number; msg: string; details?: string } =>
  error.details === undefined
    ? { cniVersion, code: error.code, msg: error.msg }
    : { cniVersion, code: error.code, msg: error.msg, details: error.details }
