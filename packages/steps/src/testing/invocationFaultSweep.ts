import { Effect, type Layer, Logger } from "effect"
import type { Backend } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"

type Mocked = Backend | MockBackend.MockControlService

/** What one plugin invocation printed: skel's handleInvocation outcome (steps does not depend on skel). */
export interface InvocationOutput {
  readonly exitCode: number
  readonly stdout: string
}

/** One world for one run: a fresh mock kernel plus whatever else the plugin needs (PluginExec, a fake IPAM). */
export interface SweepWorld<R> {
  /** must provide the Backend and MockControlService of a fresh kernel */
  readonly layer: Layer.Layer<Mocked | R>
  /** state outside the kernel to compare before and after (e.g. an IPAM's allocations) */
  readonly observe?: () => unknown
}

/** How to sweep one invocation. */
export interface InvocationFaultSweepOptions<S, R> {
  /** called once per k: nothing is shared between runs */
  readonly world: () => SweepWorld<R>
  /** what the host holds before the invocation (the pod's netns, a first pod, …); not faulted */
  readonly setup: Effect.Effect<S, unknown, Mocked | R>
  /** the invocation under test, e.g. handleInvocation of an ADD */
  readonly invoke: (state: S) => Effect.Effect<InvocationOutput, unknown, Mocked | R>
  /** after each faulted run, with the faults cleared (e.g. a CHECK of a first pod that must still pass) */
  readonly after?: (state: S, run: InvocationRun) => Effect.Effect<unknown, unknown, Mocked | R>
  /** safety bound on k (default 1000) */
  readonly maxCalls?: number
}

/** One invocation with Backend call k failing. */
export interface InvocationRun {
  readonly k: number
  /** `failed` (non-zero exit) or `succeeded` (the fault fired and was tolerated) */
  readonly outcome: "failed" | "succeeded"
  /** the operation the fault hit */
  readonly operation: string
  /** the message the injected BackendError carries (the mock's `injected fault: call #n (operation)`) */
  readonly injected: string
  /** the CNI error printed when the run failed */
  readonly error: { readonly code: unknown; readonly msg: unknown; readonly details: unknown } | undefined
  /** kernel diff from before the invocation to after it; [] means no residue */
  readonly diff: ReadonlyArray<string>
  readonly observedBefore: unknown
  readonly observedAfter: unknown
  /** what `after` returned */
  readonly afterResult: unknown
}

/** The run with no fault left to fire. */
export interface InvocationCleanRun {
  /** the first k the invocation never reached: it makes k - 1 Backend calls */
  readonly k: number
  readonly output: InvocationOutput
  /** kernel diff after the invocation (what it made) */
  readonly applied: ReadonlyArray<string>
  readonly observedBefore: unknown
  readonly observedAfter: unknown
}

/** Everything an invocation sweep saw, for the test to pin. */
export interface InvocationSweepReport {
  readonly runs: ReadonlyArray<InvocationRun>
  readonly clean: InvocationCleanRun
}

const parse = (stdout: string): unknown => {
  if (stdout.trim() === "") return undefined
  return JSON.parse(stdout)
}

const errorOf = (output: InvocationOutput): InvocationRun["error"] => {
  if (output.exitCode === 0) return undefined
  const json = parse(output.stdout)
  const record: Record<string, unknown> = typeof json === "object" && json !== null ? { ...json } : {}
  return { code: record.code, msg: record.msg, details: record.details }
}

type Attempt =
  | { readonly _tag: "Run"; readonly run: InvocationRun }
  | { readonly _tag: "Clean"; readonly clean: InvocationCleanRun }

const attempt = <S, R>(options: InvocationFaultSweepOptions<S, R>, observe: () => unknown, k: number) =>
  Effect.gen(function*() {
    const control = yield* MockBackend.MockControlService
    const state = yield* options.setup
    const before = control.snapshot()
    const observedBefore = observe()
    const callsBefore = control.calls().length
    control.failNth(k)
    // the plugin's warning for each failed run would drown the test's output
    const output = yield* options.invoke(state).pipe(Effect.provideService(Logger.CurrentLoggers, new Set()))
    control.clearFaults()
    const calls = control.calls().slice(callsBefore)
    const diff = control.diff(before, control.snapshot())
    const observedAfter = observe()
    const faulted = calls[k - 1]
    if (faulted === undefined) {
      return { _tag: "Clean", clean: { k, output, applied: diff, observedBefore, observedAfter } } as const satisfies Attempt
    }
    const run: InvocationRun = {
      k,
      outcome: output.exitCode === 0 ? "succeeded" : "failed",
      operation: faulted.operation,
      injected: `injected fault: call #${callsBefore + k} (${faulted.operation})`,
      error: errorOf(output),
      diff,
      observedBefore,
      observedAfter,
      afterResult: undefined
    }
    const afterResult = options.after ? yield* options.after(state, run) : undefined
    return { _tag: "Run", run: { ...run, afterResult } } as const satisfies Attempt
  })

/**
 * faultSweep for a whole plugin invocation (config decoding, locks, state files and the
 * pipeline together): runs the invocation once per k = 1, 2, … on a fresh world with
 * Backend call k failing, until a run makes fewer than k calls (the clean run). Each run
 * reports whether it failed, with which CNI error, and the kernel diff before/after — the
 * test pins which faults may be survived and that every failed run left no residue and
 * failed at its own injected fault.
 */
export const invocationFaultSweep = <S, R>(
  options: InvocationFaultSweepOptions<S, R>
): Effect.Effect<InvocationSweepReport, unknown> =>
  Effect.gen(function*() {
    const maxCalls = options.maxCalls ?? 1000
    const runs: Array<InvocationRun> = []
    for (let k = 1; k <= maxCalls; k++) {
      const world = options.world()
      const result = yield* Effect.provide(attempt(options, world.observe ?? (() => undefined), k), world.layer)
      if (result._tag === "Clean") return { runs, clean: result.clean }
      runs.push(result.run)
    }
    return yield* Effect.die(new Error(`invocationFaultSweep: still calling the Backend after ${maxCalls} calls`))
  })

/**
 * The runs that did not fail with the CNI error of their own injected fault (code 5, its
 * message, no rollback details) or that left a kernel diff. A test asserts this is [] when
 * no fault may be tolerated; the offending runs print whole when it is not.
 */
export const invocationRunsNotFailedAtTheirFault = (report: InvocationSweepReport): ReadonlyArray<InvocationRun> =>
  report.runs.filter((run) =>
    !(run.outcome === "failed" && run.diff.length === 0 && run.error?.code === 5 && run.error.msg === run.injected &&
      run.error.details === "reason: Injected")
  )
