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
 * What DEL and CHECK know of an attachment: the ifb's derived name, the limits the config
 * sets now, and the pod's host veth when it could be found (CHECK requires it; DEL may not
 * find it, with the pod gone).
 */
export interface BandwidthKnown {
  readonly hostVeth: string | undefined
  readonly ifb: string
  readonly ingress: TbfOptions | undefined
  readonly egress: TbfOptions | undefined
}

/**
 * The bandwidth plugin's ADD. Ingress (towards the pod) is a tbf at the host veth's root.
 * Egress (from the pod) arrives as the host veth's received traffic, which no qdisc can
 * shape; so it is redirected to an ifb whose root tbf shapes it. The ifb is shaped before
 * the redirect is installed, so no packet ever goes through it unshaped. Rolled back in
 * reverse on any failure.
 *
 * DEL finds each piece by the names ADD derived (each undo removes only what still looks
 * like ours): the ifb always (it carries the pod's name, so it is ours whatever the config
 * says now; its tbf goes with it), and on the host veth, when found, the root tbf if ingress
 * is configured and the redirect and ingress qdisc if egress is. CHECK compares all of them
 * with the config.
 */
export const bandwidthPipeline = Pipeline.make<BandwidthInput, BandwidthKnown>("bandwidth")
  .optionalStep("ingress", addTbf, (input) =>
    input.ingress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.hostVeth, tbf: input.ingress }, (known) =>
    known.ingress === undefined || known.hostVeth === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: known.hostVeth, tbf: known.ingress })
  .optionalStep("ifb", createIfb, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, ...input.ifb }, (known, purpose) =>
    purpose === "check" && known.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, name: known.ifb, index: 0, mac: "" })
  .optionalStep("egress", addTbf, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.ifb.name, tbf: input.egress }, Pipeline.checkOnly((known) =>
    known.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: known.ifb, tbf: known.egress }))
  .optionalStep("ingressQdisc", addIngressQdisc, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.hostVeth }, (known) =>
    known.egress === undefined || known.hostVeth === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: known.hostVeth })
  .optionalStep("redirect", redirectToIfb, (input) =>
    input.egress === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: input.hostVeth, ifb: input.ifb.name }, (known) =>
    known.egress === undefined || known.hostVeth === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: known.hostVeth, ifb: known.ifb })

/** The handles of one ADD by step key (absent for skipped steps). */
export type BandwidthHandles = Pipeline.HandlesOf<typeof bandwidthPipeline>
