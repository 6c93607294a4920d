import type { FilterRule } from "@tscni/backend"
import { formatIp, parseCidr } from "@tscni/ip"
import { podIpConfigs, type Result } from "@tscni/spec"
import type { IngressPolicy } from "./config.ts"
import { FIREWALL_TABLE, FORWARD_CHAIN, ISOLATION_CHAIN } from "./names.ts"

/**
 * The pod's addresses in prevResult, canonical and without prefix: the IPs of interfaces
 * inside a sandbox, and IPs that name no interface (an IPAM-only result).
 */
export const podAddresses = (result: Result): ReadonlyArray<string> => {
  const addresses: Array<string> = []
  for (const ip of podIpConfigs(result)) {
    const cidr = parseCidr(ip.address)
    if (cidr === undefined) continue
    const address = formatIp(cidr.ip)
    if (!addresses.includes(address)) addresses.push(address)
  }
  return addresses
}

const forward = (rule: string, owner: string): FilterRule => ({
  family: "inet",
  table: FIREWALL_TABLE,
  chain: FORWARD_CHAIN,
  rule,
  comment: owner,
  baseChain: { type: "filter", hook: "forward", priority: 0 }
})

const isolation = (rule: string, owner: string): FilterRule => ({
  family: "inet",
  table: FIREWALL_TABLE,
  chain: ISOLATION_CHAIN,
  rule,
  comment: owner,
  baseChain: { type: "filter", hook: "forward", priority: -1 }
})

/**
 * A connection that is not a reply and was not port-forwarded to the pod. Bitwise forms on
 * purpose: nft compiles `ct status != dnat` to an exact comparison of the whole status word.
 */
const NEW_AND_NOT_PUBLISHED = "ct state != { established, related } ct status & dnat == 0"

/**
 * One pod's forwarding rules, per address (nft family `ip` or `ip6` inside the inet table):
 *
 * forward chain (priority 0), what the reference's CNI-FORWARD chain allows:
 * - replies to the pod's connections: `daddr POD ct state established,related accept`;
 * - everything from the pod: `saddr POD accept`;
 * - `open`: every connection to the pod: `daddr POD accept`;
 * - `same-bridge`: connections that come in through the pod's bridge: `iifname BR daddr POD accept`.
 *
 * isolation chain (priority -1), the ingress policy (a drop is final across chains and tables):
 * - `same-bridge`: `iifname != BR daddr POD <new, not DNAT-ed> drop`;
 * - `isolated`: `daddr POD <new, not DNAT-ed> drop`.
 *
 * Traffic between ports of one bridge reaches the forward hook only when br_netfilter hands
 * bridged packets to it (`net.bridge.bridge-nf-call-iptables=1`, which the bridge plugin
 * sets): only then does `isolated` separate pods of the same bridge.
 */
export const ruleSet = (
  addresses: ReadonlyArray<string>,
  policy: IngressPolicy,
  bridge: string | undefined,
  owner: string
): Array<FilterRule> =>
  addresses.flatMap((address) => {
    const family = address.includes(":") ? "ip6" : "ip"
    const rules = [
      forward(`${family} daddr ${address} ct state established,related accept`, owner),
      forward(`${family} saddr ${address} accept`, owner)
    ]
    if (policy === "open") rules.push(forward(`${family} daddr ${address} accept`, owner))
    if (policy === "same-bridge") {
      rules.push(forward(`iifname "${bridge}" ${family} daddr ${address} accept`, owner))
      rules.push(isolation(`iifname != "${bridge}" ${family} daddr ${address} ${NEW_AND_NOT_PUBLISHED} drop`, owner))
    }
    if (policy === "isolated") rules.push(isolation(`${family} daddr ${address} ${NEW_AND_NOT_PUBLISHED} drop`, owner))
    return rules
  })
