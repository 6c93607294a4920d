import { Effect, Schema } from "effect"
import { Backend, type BackendError, isMissingNetns, isNotFound } from "@tscni/backend"
import { type CniError, invalidConfig } from "@tscni/spec"
import { derive, eachOf, Pipeline } from "@tscni/engine"
import { type LinkOptions, previousLinkOptions, setLinkOptions, setSysctl } from "@tscni/steps"
import type { SysctlSetting } from "./config.ts"
import { TuningHandles } from "./state.ts"
import { saveState } from "./steps/saveState.ts"

/** One tuning ADD: what to change, where, and where to remember the old values. */
export interface TuningInput {
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  readonly sysctls: ReadonlyArray<SysctlSetting>
  /** one property per entry, in the order they are applied */
  readonly link: ReadonlyArray<LinkOptions>
  /** the attachment's state file */
  readonly statePath: string
}

/**
 * Reads every value ADD is about to replace and returns the handles that would undo it,
 * exactly as the sysctl and link steps will record them. Reads only.
 */
const planRestore = (input: TuningInput): Effect.Effect<TuningHandles, BackendError | CniError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const sysctls = []
    for (const sysctl of input.sysctls) {
      const previous = yield* backend.readSysctl(input.netns, sysctl.key).pipe(
        Effect.catchIf(
          (error) => isNotFound(error) && !isMissingNetns(error),
          () => Effect.fail(invalidConfig(`sysctl["${sysctl.configKey}"]`, `${sysctl.key} does not exist in ${input.netns}`))
        )
      )
      sysctls.push({ netns: input.netns, key: sysctl.key, value: sysctl.value, previous, restoreOnUndo: true })
    }
    const link = []
    if (input.link.length > 0) {
      const current = yield* backend.getLink(input.netns, input.ifname)
      for (const applied of input.link) {
        link.push({ netns: input.netns, link: input.ifname, applied, previous: previousLinkOptions(current, applied) })
      }
    }
    return { sysctls, link }
  })

const encodePlan = Schema.encodeSync(TuningHandles)

/**
 * What DEL and CHECK know of an attachment: where it is, what the config asks for now
 * (CHECK verifies it), and what ADD replaced, from the attachment's state file (DEL puts
 * it back, in the namespace the runtime names now).
 */
export interface TuningKnown {
  readonly netns: string
  readonly ifname: string
  readonly sysctls: ReadonlyArray<SysctlSetting>
  readonly link: ReadonlyArray<LinkOptions>
  readonly saved: Partial<TuningHandles> | undefined
}

/**
 * tuning's ADD: note the values to restore (state file first, so an interrupted ADD is
 * still undoable by DEL), then the sysctls in the pod's namespace, then the interface's
 * properties one at a time in the reference's order (mac, promisc, mtu, allmulti, txqlen).
 */
export const tuningPipeline = Pipeline.make<TuningInput, TuningKnown>("tuning")
  .step("plan", derive("planRestore", TuningHandles, planRestore), (input) => input, Pipeline.unlocated)
  // DEL removes the file itself, and only once everything in it was put back
  .optionalStep("state", saveState, (input, handles) =>
    input.sysctls.length === 0 && input.link.length === 0
      ? Pipeline.skip
      : {
        path: input.statePath,
        record: {
          containerId: input.containerId,
          ifname: input.ifname,
          netns: input.netns,
          handles: encodePlan(handles.plan)
        }
      }, Pipeline.unlocated)
  .step("sysctls", eachOf(setSysctl), (input) => input.sysctls.map((s) => ({ netns: input.netns, key: s.key, value: s.value })), (known, purpose) =>
    purpose === "del"
      ? (known.saved?.sysctls ?? []).map((handle) => ({ ...handle, netns: known.netns }))
      : known.sysctls.map((s) => ({ netns: known.netns, key: s.key, value: s.value, previous: "", restoreOnUndo: true })))
  .step("link", eachOf(setLinkOptions), (input) => input.link.map((options) => ({ netns: input.netns, link: input.ifname, options })), (known, purpose) =>
    purpose === "del"
      ? (known.saved?.link ?? []).map((handle) => ({ ...handle, netns: known.netns }))
      : known.link.map((applied) => ({ netns: known.netns, link: known.ifname, applied, previous: {} })))
