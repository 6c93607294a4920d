/**
 * The IPAM failures that are neither a bad config (7) nor an IO failure (5).
 *
 * An exhausted range and a requested address someone else holds use code 100, not 11:
 * 11 means "transient, retry later", but neither clears by itself: only a DEL elsewhere, or
 * a bigger range, frees an address, and a runtime retrying on 11 would spin. Codes 0–99
 * are reserved by the spec; 100 is tscni's code for failures that fit no well-known one.
 * The message names the address or the ranges, which is what an operator needs.
 */
import { CniError, ErrorCode } from "@tscni/spec"

/** Code 100: no address could be allocated (exhausted range, requested address taken). */
export const allocationFailed = (msg: string): CniError => new CniError({ code: ErrorCode.Internal, msg })

/** Code 100: CHECK found the allocation is not what ADD promised (the spec has no code for it). */
export const checkFailed = (plugin: string, msg: string): CniError =>
  new CniError({ code: ErrorCode.Internal, msg: `${plugin} CHECK: ${msg}` })
