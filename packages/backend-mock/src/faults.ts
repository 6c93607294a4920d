import type { BackendError, BackendErrorReason } from "@tscni/backend"
import { backendError } from "./state.ts"

/** One Backend call as the mock saw it, for assertions and fault predicates. */
export interface MockCall {
  readonly operation: string
  readonly args: ReadonlyArray<unknown>
}

/** Fault injection and the call log; `intercept` runs before an operation touches anything. */
export interface Faults {
  /** records the call; returns the error to fail it with, if a fault fires */
  readonly intercept: (call: MockCall) => BackendError | undefined
  readonly failNth: (n: number, reason?: BackendErrorReason) => void
  readonly failWhen: (predicate: (call: MockCall) => boolean, reason?: BackendErrorReason) => void
  readonly clearFaults: () => void
  readonly calls: () => ReadonlyArray<MockCall>
}

/** A fresh call log with no faults armed. */
export const makeFaults = (): Faults => {
  const log: Array<MockCall> = []
  let nth: Array<{ readonly at: number; readonly reason: BackendErrorReason }> = []
  let predicates: Array<{ readonly predicate: (call: MockCall) => boolean; readonly reason: BackendErrorReason }> = []

  const injected = (call: MockCall, reason: BackendErrorReason, why: string): BackendError =>
    backendError(call.operation, reason, `injected fault: ${why}`)

  return {
    intercept: (call) => {
      log.push(call)
      const count = log.length
      const armed = nth.find((f) => f.at === count)
      if (armed !== undefined) {
        nth = nth.filter((f) => f !== armed)
        return injected(call, armed.reason, `call #${count} (${call.operation})`)
      }
      const matching = predicates.find((f) => f.predicate(call))
      return matching === undefined ? undefined : injected(call, matching.reason, `predicate matched ${call.operation}`)
    },
    failNth: (n, reason = "Injected") => {
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`failNth expects a positive integer, got ${n}`)
      nth = [...nth, { at: log.length + n, reason }]
    },
    failWhen: (predicate, reason = "Injected") => {
      predicates = [...predicates, { predicate, reason }]
    },
    clearFaults: () => {
      nth = []
      predicates = []
    },
    calls: () => [...log]
  }
}
