/**
 * A pod's masquerade (`ipMasq`), as the reference's bridge and ptp plugins do it: traffic
 * from a pod address to anything but the pod's own network and multicast leaves with the
 * node's address. In nftables it is elements of a network's keyed table; with iptables a
 * chain per attachment.
 */
import { HOST_NETNS, type IptablesChain, type IptablesPodBatch, type NftTable } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { formatCidr, networkOf, parseCidr } from "@tscni/ip"
import type { Result } from "@tscni/spec"
import { attachmentKey } from "./attachment.ts"
import { type IptablesPodChainsHandle, type IptablesPodChainsInput, iptablesPodChainsHandle, iptablesPodChainsHandles } from "./iptablesPodChains.ts"
import { keyedTable, keyedTablePrefix, type NftElementsHandle, type NftElementsInput, nftElementsHandle, type OwnedElement } from "./nftElements.ts"

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

/**
 * One attachment's masquerade as its plugin is configured (bridge, ptp): where the rules go,
 * whose they are, and whether and how the pod is masqueraded. What the two masquerade
 * steps of a pipeline (nftables elements, iptables chains) take their input and their
 * `locate` from.
 */
export interface PodMasquerade {
  /** the namespace the rules go in: the host */
  readonly netns: string
  readonly network: string
  /** the attachment's owner comment (`<plugin>:<network hash>:<attachment key>`) */
  readonly owner: string
  /** the attachment's iptables chain (masqueradeChain) */
  readonly chain: string
  /** `ipMasq` */
  readonly enabled: boolean
  /** `ipMasqBackend` */
  readonly backend: "nftables" | "iptables"
}

/**
 * A pod's masquerade in the host, from its plugin's settings (`ipMasq`, `ipMasqBackend`)
 * and its attachment (the iptables chain is named from it), owned by `owner`.
 */
export const podMasquerade = (
  settings: { readonly network: string; readonly ipMasq: boolean; readonly ipMasqBackend: PodMasquerade["backend"] },
  attachment: { readonly containerId: string; readonly ifname: string },
  owner: string
): PodMasquerade => ({
  netns: HOST_NETNS,
  network: settings.network,
  owner,
  chain: masqueradeChain(attachmentKey(attachment.containerId, attachment.ifname)),
  enabled: settings.ipMasq,
  backend: settings.ipMasqBackend
})

const masquerades = (m: PodMasquerade, backend: PodMasquerade["backend"], addresses: ReadonlyArray<string>): boolean =>
  m.enabled && m.backend === backend && addresses.length > 0

/** ADD's nftables step: the pod's addresses as elements of the network's table (skipped unless that is how it is masqueraded). */
export const nftMasqueradeInput = (m: PodMasquerade, addresses: ReadonlyArray<string>): NftElementsInput | Pipeline.Skip =>
  masquerades(m, "nftables", addresses)
    ? { netns: m.netns, table: masqueradeTable(m.network), owner: m.owner, elements: masqueradeElements(addresses) }
    : Pipeline.skip

/**
 * The nftables step's `locate`. DEL looks wherever nftables is the backend (ipMasq may have
 * been turned off since ADD): by key from `pod` (the pod's part of prevResult), by owner
 * without it. CHECK verifies the elements of `planned` when the pod is masqueraded.
 */
export const locateNftMasquerade = (
  m: PodMasquerade,
  purpose: Pipeline.Purpose,
  pod: Result | undefined,
  planned: ReadonlyArray<string>
): NftElementsHandle | Pipeline.Skip => {
  if (m.backend !== "nftables") return Pipeline.skip
  const table = masqueradeTable(m.network)
  if (purpose === "del") {
    return nftElementsHandle(m.netns, table, m.owner, pod === undefined ? undefined : masqueradeElements((pod.ips ?? []).map((ip) => ip.address)))
  }
  return masquerades(m, "nftables", planned) ? nftElementsHandle(m.netns, table, m.owner, masqueradeElements(planned)) : Pipeline.skip
}

/** ADD's iptables step (`ipMasqBackend: "iptables"`): the attachment's chain, one batch per family with addresses. */
export const iptablesMasqueradeInput = (m: PodMasquerade, addresses: ReadonlyArray<string>): Array<IptablesPodChainsInput> | Pipeline.Skip =>
  masquerades(m, "iptables", addresses)
    ? masqueradePodBatches(addresses, m.owner, m.chain).map((batch) => ({ netns: m.netns, batch }))
    : Pipeline.skip

/**
 * The iptables step's `locate`: DEL removes the attachment's chains in both families by
 * name (a family the pod had no address of holds none); CHECK verifies those of `planned`.
 */
export const locateIptablesMasquerade = (
  m: PodMasquerade,
  purpose: Pipeline.Purpose,
  planned: ReadonlyArray<string>
): Array<IptablesPodChainsHandle> | Pipeline.Skip => {
  if (m.backend !== "iptables") return Pipeline.skip
  if (purpose === "del") return iptablesPodChainsHandles(m.netns, "nat", m.owner, [{ name: m.chain, entry: MASQUERADE_ENTRY.name }])
  return masquerades(m, "iptables", planned)
    ? masqueradePodBatches(planned, m.owner, m.chain).map((batch) => iptablesPodChainsHandle(m.netns, batch))
    : Pipeline.skip
}
