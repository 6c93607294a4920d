import { type FilterRule, HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { FIREWALL_TABLE } from "./names.ts"
import { podRules } from "./steps/podRules.ts"

/** One firewall ADD: the pod's addresses and its rules, all with the attachment's owner comment. */
export interface FirewallInput {
  readonly owner: string
  readonly addresses: ReadonlyArray<string>
  readonly rules: ReadonlyArray<FilterRule>
}

/**
 * firewall's ADD: the pod's rules in tscni's table of the host, in one nftables
 * transaction (all or nothing). A pod without addresses gets no rules.
 */
export const firewallPipeline = Pipeline.make<FirewallInput>("firewall")
  .optionalStep("rules", podRules, (input) =>
    input.rules.length === 0
      ? Pipeline.skip
      : { netns: HOST_NETNS, table: FIREWALL_TABLE, comment: input.owner, addresses: input.addresses, rules: input.rules })
