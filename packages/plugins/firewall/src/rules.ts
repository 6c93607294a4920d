import type { NftTable } from "@tscni/backend"
import { formatIp, parseCidr } from "@tscni/ip"
import { keyedTable, type OwnedElement } from "@tscni/steps"
import { podIpConfigs, type Result } from "@tscni/spec"
import type { IngressPolicy } from "./config.ts"
import { FORWARD_CHAIN, ISOLATION_CHAIN, TABLE_KIND } from "./names.ts"

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

/**
 * A connection that is not a reply and was not port-forwarded to the pod. Bitwise forms on
 * purpose: nft compiles `ct status != dnat` to an exact comparison of the whole status word.
 */
const NEW_AND_NOT_PUBLISHED = "ct state != { established, related } ct status & dnat == 0"

/**
 * The network's firewall table, per family (`pods4` / `pods6` hold its pods' addresses):
 *
 * forward chain (priority 0), what the reference's CNI-FORWARD chain allows:
 * - replies to the pods' connections: `daddr @pods ct state established,related accept`;
 * - everything from the pods: `saddr @pods accept`;
 * - `open`: every connection to the pods: `daddr @pods accept`;
 * - `same-bridge`: connections that come in through the pods' bridge: `iifname BR daddr @pods accept`.
 *
 * isolation chain (priority -1), the ingress policy (a drop is final across chains and tables):
 * - `same-bridge`: `iifname != BR daddr @pods <new, not DNAT-ed> drop`;
 * - `isolated`: `daddr @pods <new, not DNAT-ed> drop`.
 *
 * Traffic between ports of one bridge reaches the forward hook only when br_netfilter hands
 * bridged packets to it (`net.bridge.bridge-nf-call-iptables=1`, which the bridge plugin
 * sets): only then does `isolated` separate pods of the same bridge.
 */
export const firewallTable = (network: string, policy: IngressPolicy, bridge: string | undefined): NftTable => {
  const forward: Array<string> = []
  const isolation: Array<string> = []
  for (const [family, set] of [["ip", "@pods4"], ["ip6", "@pods6"]] as const) {
    forward.push(`${family} daddr ${set} ct state established,related accept`, `${family} saddr ${set} accept`)
    if (policy === "open") forward.push(`${family} daddr ${set} accept`)
    if (policy === "same-bridge") {
      forward.push(`iifname "${bridge}" ${family} daddr ${set} accept`)
      isolation.push(`iifname != "${bridge}" ${family} daddr ${set} ${NEW_AND_NOT_PUBLISHED} drop`)
    }
    if (policy === "isolated") isolation.push(`${family} daddr ${set} ${NEW_AND_NOT_PUBLISHED} drop`)
  }
  return keyedTable(TABLE_KIND, network, {
    family: "inet",
    sets: [{ name: "pods4", type: "ipv4_addr" }, { name: "pods6", type: "ipv6_addr" }],
    chains: [
      { name: FORWARD_CHAIN, base: { type: "filter", hook: "forward", priority: 0 }, rules: forward },
      ...(isolation.length > 0 ? [{ name: ISOLATION_CHAIN, base: { type: "filter" as const, hook: "forward" as const, priority: -1 }, rules: isolation }] : [])
    ]
  })
}

/** A pod's elements: its addresses, canonical, in its family's set. */
export const firewallElements = (addresses: ReadonlyArray<string>): Array<OwnedElement> =>
  addresses.map((address) => ({ set: address.includes(":") ? "pods6" : "pods4", key: address }))
