import { describe, expect, it } from "bun:test"
import { type FaultRun, runsNotFailedAtTheirFault } from "../src/testing/faultSweep.ts"

const clean: FaultRun = {
  k: 1,
  outcome: "failed",
  failedStep: "linkUp",
  appliedSteps: [],
  faultedOperation: "setLink",
  error: { _tag: "BackendError", operation: "setLink", reason: "Injected" },
  rollbackIncomplete: undefined,
  diff: [],
  observedBefore: undefined,
  observedAfter: undefined
}
const report = (runs: ReadonlyArray<FaultRun>) => ({
  runs,
  clean: { k: runs.length + 1, handles: {}, applied: [], undoDiff: [], undoError: undefined, observedBefore: undefined, observedAfter: undefined }
})

describe("runsNotFailedAtTheirFault", () => {
  it("a run that failed at its own fault and left nothing is fine", () => {
    expect(runsNotFailedAtTheirFault(report([clean]))).toEqual([])
  })
  it("each way of not failing cleanly is reported", () => {
    const bad: ReadonlyArray<FaultRun> = [
      { ...clean, k: 2, outcome: "succeeded" },
      { ...clean, k: 3, diff: ["+ link veth0"] },
      { ...clean, k: 4, error: { operation: "getLink", reason: "Injected" } },
      { ...clean, k: 5, error: { operation: "setLink", reason: "NotFound" } }
    ]
    expect(runsNotFailedAtTheirFault(report([clean, ...bad])).map((run) => run.k)).toEqual([2, 3, 4, 5])
  })
})
