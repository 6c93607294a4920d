/**
 * A pod's masquerade (`ipMasq`), as the reference's bridge and ptp plugins do it: traffic
 * from a pod address to anything but the pod's own network and multicast leaves with the
 * node's address. In nftables it is elements of a network's keyed table; with iptables a
 * chain per attachment.
 */
import type { IptablesChain, IptablesPodBatch, NftTable } from "@tscni/backend"
import { formatCidr, networkOf, parseCidr } from "@tscni/ip"
import { keyedTable, keyedTablePrefix, type OwnedElement } from "./nftElements.ts"

const KIND = "masq"

/**
 * The skeleton: per family, a set of pod addresses and an interval set of (pod address .
 * its network), so each pod's exception is its own network, as in the reference.
 */
const SKELETON: Omit<NftTable, "name"> = {
  family: "inet",
  sets: [
    { name: "pods4", type: "ipv4_addr" },
    { name: "own4", type: "ipv4_addr . ipv4_addr", interval: true },
    { name: "pods6", type: "ipv6_addr" },
    { name: "own6", type: "ipv6_addr . ipv6_addr", interval: true }
  ],
  chains: [{
    name: "postrouting",
    base: { type: "nat", hook: "postrouting", priority: 100 },
    rules: [
      "ip daddr 224.0.0.0/4 return",
      "ip saddr . ip daddr @own4 return",
      "ip saddr @pods4 masquerade",
      "ip6 daddr ff00::/8 return",
      "ip6 saddr . ip6 daddr @own6 return",
      "ip6 saddr @pods6 masquerade"
    ]
  }]
}

/** The network's masquerade table. */
export const masqueradeTable = (network: string): NftTable => keyedTable(KIND, network, SKELETON)

/** What every masquerade table of the network is named with (GC). */
export const masqueradeTablePrefix = (network: string): string => keyedTablePrefix(KIND, network)

/** A network as an interval key part: `10.1.0.0/16`, or the bare address for a full-length prefix (as nft prints it). */
const networkKey = (address: string): string | undefined => {
  const cidr = parseCidr(address)
  if (cidr === undefined) return undefined
  const text = formatCidr(networkOf(cidr))
  return cidr.prefix === (cidr.ip.family === 4 ? 32 : 128) ? text.slice(0, text.indexOf("/")) : text
}

/** The elements of a pod's addresses (CIDR form): its address, and its address with its network. */
export const masqueradeElements = (addresses: ReadonlyArray<string>): Array<OwnedElement> =>
  addresses.flatMap((address) => {
    const cidr = parseCidr(address)
    const network = networkKey(address)
    if (cidr === undefined || network === undefined) return []
    const ip = formatCidr(cidr).split("/")[0]!
    const v = cidr.ip.family === 4 ? "4" : "6"
    return [{ set: `pods${v}`, key: ip }, { set: `own${v}`, key: `${ip} . ${network}` }]
  })

/** tscni's shared iptables chain (nat table, both families) the per-attachment masquerade chains are entered from. */
export const MASQUERADE_ENTRY: IptablesChain = { name: "TSCNI-MASQ", jumpFrom: [{ chain: "POSTROUTING", position: "append" }] }

/** An attachment's masquerade chain: `TSCNI-M-` and its attachment key. */
export const masqueradeChain = (attachmentKey: string): string => `TSCNI-M-${attachmentKey.toUpperCase()}`

/**
 * The same masquerade with iptables, one batch per family with addresses: in the
 * attachment's chain, traffic to the pod's own network returns, anything else but
 * multicast is masqueraded.
 */
export const masqueradePodBatches = (addresses: ReadonlyArray<string>, owner: string, chain: string): Array<IptablesPodBatch> =>
  ([4, 6] as const).flatMap((family) => {
    const rules = addresses.flatMap((address) => {
      const cidr = parseCidr(address)
      if (cidr?.ip.family !== family) return []
      const source = `${formatCidr(cidr).split("/")[0]}/${family === 4 ? 32 : 128}`
      return [
        ["-s", source, "-d", formatCidr(networkOf(cidr)), "-j", "RETURN"],
        ["-s", source, "!", "-d", family === 4 ? "224.0.0.0/4" : "ff00::/8", "-j", "MASQUERADE"]
      ]
    })
    return rules.length === 0 ? [] : [{ family, table: "nat" as const, comment: owner, chains: [{ name: chain, entry: MASQUERADE_ENTRY, rules }] }]
  })
