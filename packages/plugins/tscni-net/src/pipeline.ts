import { Pipeline } from "@tscni/engine"
import type { Result } from "@tscni/spec"
import { type DelegatingRequest, ipamAllocate, type IpamAllocateInput, locateIpamAllocation } from "@tscni/steps"
import { saveDelegate } from "./steps/saveDelegate.ts"

/** One tscni-net ADD: the attachment, its rendered delegate and where it is kept. */
export interface TscniNetInput extends DelegatingRequest {
  readonly delegate: Readonly<Record<string, unknown>>
  /** the saved delegate's file */
  readonly path: string
}

/** What DEL and CHECK know: the attachment, its saved (or re-rendered) delegate, prevResult. */
export interface TscniNetKnown {
  readonly attachment: DelegatingRequest
  readonly path: string
  /** undefined: none saved and no node file to render one from (DEL has nothing to delegate) */
  readonly delegate: Readonly<Record<string, unknown>> | undefined
  readonly prevResult: Result | undefined
  /** prevResult as the runtime sent it, passed on to the delegate's DEL */
  readonly rawPrevResult: unknown
}

/** The delegate's invocation: the attachment's env, the delegate's config on stdin. */
export const delegateRequest = (attachment: DelegatingRequest, delegate: Readonly<Record<string, unknown>>): IpamAllocateInput => ({
  pluginType: String(delegate.type),
  config: delegate,
  cniVersion: attachment.cniVersion,
  containerId: attachment.containerId,
  netns: attachment.netns,
  ifname: attachment.ifname,
  args: attachment.args,
  cniPath: attachment.cniPath,
  role: "delegate"
})

/**
 * tscni-net's ADD: keep the rendered delegate, then run it (its DEL undoes it, as an IPAM
 * delegation is undone). DEL runs the saved delegate's DEL with the runtime's prevResult,
 * then removes the file; CHECK runs its CHECK.
 */
export const tscniNetPipeline = Pipeline.make<TscniNetInput, TscniNetKnown>("tscni-net")
  .step("saved", saveDelegate, (input) => ({ path: input.path, delegate: input.delegate }), (known) => ({ path: known.path }))
  .step("delegate", ipamAllocate, (input) => delegateRequest(input, input.delegate), (known, purpose) => {
    if (known.delegate === undefined) return Pipeline.skip
    const config = purpose === "del" && known.rawPrevResult !== undefined ? { ...known.delegate, prevResult: known.rawPrevResult } : known.delegate
    return locateIpamAllocation(delegateRequest(known.attachment, config), purpose, known.prevResult, known.prevResult)
  })
