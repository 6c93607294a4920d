import type { NftTable } from "@tscni/backend"
import { HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { nftElements } from "@tscni/steps"
import { firewallElements } from "./rules.ts"

/** One firewall ADD: the network's table and the pod's addresses in it, with the attachment's owner comment. */
export interface FirewallInput {
  readonly owner: string
  readonly addresses: ReadonlyArray<string>
  readonly table: NftTable
}

/**
 * firewall's ADD: the pod's addresses in the network's firewall table of the host, in one
 * nftables transaction (the table with them for the network's first pod). A pod without
 * addresses gets nothing.
 */
export const firewallPipeline = Pipeline.make<FirewallInput>("firewall")
  .optionalStep("pod", nftElements, (input) =>
    input.addresses.length === 0
      ? Pipeline.skip
      : { netns: HOST_NETNS, table: input.table, owner: input.owner, elements: firewallElements(input.addresses) })
