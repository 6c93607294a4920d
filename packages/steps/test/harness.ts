import { expect, test } from "bun:test"
import { Cause, Effect, Exit, Option } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import type { Step } from "@tscni/engine"

/** What a step test may require: the mock kernel and its control handle. */
export type Kernel = Backend | MockBackend.MockControlService

/** Runs `body` on a fresh mock kernel; a failure throws (and fails the test). */
export const onKernel = <A, E>(body: Effect.Effect<A, E, Kernel>): A =>
  Effect.runSync(Effect.provide(body, MockBackend.layer))

export const control = MockBackend.MockControlService
export const backend = Backend

/** The typed failure of an exit, if it failed with one. */
export const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined

/** How to exercise one step on the mock. */
export interface StepCase<I, H> {
  readonly step: Step<I, H, BackendError, Backend>
  /** creates the prerequisites (not part of what is asserted) and returns the step input */
  readonly prepare: Effect.Effect<I, BackendError, Backend>
  /** asserts the kernel diff apply produced (exact lines, as a rule) */
  readonly expectDiff: (handle: H, diff: ReadonlyArray<string>) => void
  /** asserts through Backend reads that the kernel holds what the handle says */
  readonly observe: (handle: H) => Effect.Effect<void, BackendError, Backend>
  /** removes what the step made, by hand (a human with `ip`) */
  readonly removeByHand: (handle: H) => Effect.Effect<void, BackendError, Backend>
  /** changes the kernel so the step's postcondition no longer holds */
  readonly breakByHand: (handle: H) => Effect.Effect<void, BackendError, Backend>
}

/** The contract tests every step passes (see the brief in DESIGN.md "Tests"). */
export const stepContract = <I, H>(c: StepCase<I, H>): void => {
  const name = c.step.name

  test(`${name}: apply creates exactly what the handle says`, () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const input = yield* c.prepare
      const before = mock.snapshot()
      const handle = yield* c.step.apply(input)
      c.expectDiff(handle, mock.diff(before, mock.snapshot()))
      yield* c.observe(handle)
    }))
  })

  test(`${name}: undo restores the snapshot exactly, and undo twice is fine`, () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const input = yield* c.prepare
      const before = mock.snapshot()
      const handle = yield* c.step.apply(input)
      yield* c.step.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* c.step.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test(`${name}: undo after the object was removed by hand is fine and changes nothing`, () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const input = yield* c.prepare
      const handle = yield* c.step.apply(input)
      yield* c.removeByHand(handle)
      const removed = mock.snapshot()
      yield* c.step.undo(handle)
      expect(mock.diff(removed, mock.snapshot())).toEqual([])
    }))
  })

  test(`${name}: check passes after apply and fails with CheckFailed after a manual change`, () => {
    onKernel(Effect.gen(function*() {
      const input = yield* c.prepare
      const handle = yield* c.step.apply(input)
      yield* c.step.check(handle)
      yield* c.breakByHand(handle)
      const error = failureOf(yield* Effect.exit(c.step.check(handle)))
      expect(error?._tag).toBe("CheckFailed")
    }))
  })

  test(`${name}: an injected failure at any Backend call of apply leaves the snapshot unchanged`, () => {
    const calls = onKernel(Effect.gen(function*() {
      const mock = yield* control
      const input = yield* c.prepare
      const start = mock.calls().length
      yield* c.step.apply(input)
      return mock.calls().length - start
    }))
    expect(calls).toBeGreaterThan(0)
    for (let k = 1; k <= calls; k++) {
      const outcome = onKernel(Effect.gen(function*() {
        const mock = yield* control
        const input = yield* c.prepare
        const before = mock.snapshot()
        mock.failNth(k)
        const error = failureOf(yield* Effect.exit(c.step.apply(input)))
        mock.clearFaults()
        return { k, reason: error?._tag === "BackendError" ? error.reason : undefined, diff: mock.diff(before, mock.snapshot()) }
      }))
      expect(outcome).toEqual({ k, reason: "Injected", diff: [] })
    }
  })
}

/** The per-link sysctls the mock kernel creates with every link, as diff lines. */
export const linkSysctlLines = (netns: string, name: string): ReadonlyArray<string> => [
  `${netns}: + sysctl net.ipv4.conf.${name}.arp_notify = 0`,
  `${netns}: + sysctl net.ipv4.conf.${name}.route_localnet = 0`,
  `${netns}: + sysctl net.ipv6.conf.${name}.accept_dad = 1`,
  `${netns}: + sysctl net.ipv6.conf.${name}.disable_ipv6 = 0`
]

/** Diff lines of a new link (its sysctls included), as the mock reports them. */
export const linkAddedLines = (netns: string, name: string, kind: string, index: number): ReadonlyArray<string> => [
  `${netns}: + link ${name} (${kind}, index ${index})`,
  ...linkSysctlLines(netns, name)
]
