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
 * tuning's ADD: note the values to restore (state file first, so an interrupted ADD is
 * still undoable by DEL), then the sysctls in the pod's namespace, then the interface's
 * properties one at a time in the reference's order (mac, promisc, mtu, allmulti, txqlen).
 */
export const tuningPipeline = Pipeline.make<TuningInput>("tuning")
  .step("plan", derive("planRestore", TuningHandles, planRestore), (input) => input)
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
      })
  .step("sysctls", eachOf(setSysctl), (input) => input.sysctls.map((s) => ({ netns: input.netns, key: s.key, value: s.value })))
  .step("link", eachOf(setLinkOptions), (input) => input.link.map((options) => ({ netns: input.netns, link: input.ifname, options })))
