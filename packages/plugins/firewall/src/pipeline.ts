import type { NftTable } from "@tscni/backend"
import { HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { nftElements, nftElementsHandle } from "@tscni/steps"
import { firewallElements } from "./rules.ts"

/** One firewall ADD: the network's table and the pod's addresses in it, with the attachment's owner comment. */
export interface FirewallInput {
  readonly owner: string
  readonly addresses: ReadonlyArray<string>
  readonly table: NftTable
}

/**
 * What DEL and CHECK know: the attachment's owner, the table its config and prevResult
 * name, and the pod's addresses from prevResult (none known without one: DEL then finds
 * the pod's elements by owner).
 */
export interface FirewallKnown {
  readonly owner: string
  readonly table: NftTable
  readonly addresses: ReadonlyArray<string> | undefined
}

/**
 * firewall's ADD: the pod's addresses in the network's firewall table of the host, in one
 * nftables transaction (the table with them for the network's first pod). A pod without
 * addresses gets nothing.
 */
export const firewallPipeline = Pipeline.make<FirewallInput, FirewallKnown>("firewall")
  .optionalStep("pod", nftElements, (input) =>
    input.addresses.length === 0
      ? Pipeline.skip
      : { netns: HOST_NETNS, table: input.table, owner: input.owner, elements: firewallElements(input.addresses) }, (known) =>
    known.addresses?.length === 0
      ? Pipeline.skip
      : nftElementsHandle(HOST_NETNS, known.table, known.owner, known.addresses === undefined ? undefined : firewallElements(known.addresses)))
