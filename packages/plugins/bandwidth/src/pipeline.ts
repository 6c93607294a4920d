import { HOST_NETNS, type TbfOptions } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { addIngressQdisc } from "./steps/addIngressQdisc.ts"
import { addTbf } from "./steps/addTbf.ts"
import { createIfb } from "./steps/createIfb.ts"
import { redirectToIfb } from "./steps/redirectToIfb.ts"

/** One bandwidth ADD, everything decided: which link, which ifb, which limits. */
export interface BandwidthInput {
  /** the pod's veth end in the host namespace */
  readonly hostVeth: string
  readonly ifb: { readonly name: string; readonly mtu: number; readonly txqlen: number; readonly alias: string }
  /** towards the pod */
  readonly ingress: TbfOptions | undefined
  /** from the pod */
  readonly egress: TbfOptions | undefined
}

/**
 * The bandwidth plugin's ADD. Ingress (towards the pod) is a tbf at the host veth's root.
 * Egress (from the pod) arrives as the host veth's received traffic, which no qdisc can
 * shape; so it is redirected to an ifb whose root tbf shapes it. The ifb is shaped before
 * the redirect is installed, so no packet ever goes through it unshaped. Rolled back in
 * reverse on any failure.
 */
export const bandwidthPipeline = Pipeline.make<BandwidthInput>("bandwidth")
  .optionalStep("ingress", addTbf, (input) =>
    input.ingress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.hostVeth, tbf: input.ingress })
  .optionalStep("ifb", createIfb, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, ...input.ifb })
  .optionalStep("egress", addTbf, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.ifb.name, tbf: input.egress })
  .optionalStep("ingressQdisc", addIngressQdisc, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.hostVeth })
  .optionalStep("redirect", redirectToIfb, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.hostVeth, ifb: input.ifb.name })

/**
 * The handles of one run by step key (absent for skipped steps), inferred from the pipeline
 * so the plugin's CHECK and DEL rebuild them with the types ADD produced.
 */
export type BandwidthHandles = typeof bandwidthPipeline extends Pipeline.Pipeline<BandwidthInput, infer H, infer _E, infer _R> ? H : never
