import type { IptablesChain, IptablesPodBatch, NftChain, NftSet, NftTable, NftTableRef } from "@tscni/backend"
import { bits, type Cidr, formatCidr, formatIp, networkOf, parseCidr, parseIp } from "@tscni/ip"
import { keyedTable, keyedTablePrefix, type OwnedElement } from "@tscni/steps"
import type { Mapping, PortmapSettings } from "./config.ts"

/**
 * The hostPort tables: one per network and settings (snat, masqAll, conditions), holding
 * the DNAT maps and the masquerade sets; a pod's mappings are elements (see
 * portmapElements). The layout before keyed tables kept rules in `ip`/`ip6 tscni-portmap`.
 */
export const LEGACY_TABLES: ReadonlyArray<NftTableRef> = [{ family: "ip", name: "tscni-portmap" }, { family: "ip6", name: "tscni-portmap" }]

/**
 * `0.0.0.0` / `::` as hostIP mean every local address of that family (as the reference
 * reads them): the mapping stays per family, with no address match.
 */
const isUnspecified = (hostIP: string): boolean => parseIp(hostIP)?.value === 0n

const DNAT_PRIORITY = -100
const SNAT_PRIORITY = 100
const FAMILIES = [{ v: "4", nft: "ip", addr: "ipv4_addr" }, { v: "6", nft: "ip6", addr: "ipv6_addr" }] as const
const PORT = "inet_proto . inet_service"

/**
 * The skeleton of a network's hostPort table, per family:
 * - prerouting (traffic from elsewhere) and output (from the host itself): DNAT through
 *   `hostdnat` (mappings with a hostIP: address . protocol . port) and `dnat` (every local
 *   address: protocol . port), behind the network's conditions;
 * - with `snat` (default): masquerade a pod reaching its own hostPort (`hairpin`: pod .
 *   pod . protocol . port) and, for IPv4, the host reaching it from 127.0.0.0/8 (`local`,
 *   which needs route_localnet);
 * - with `masqAll`: masquerade everything DNATed to a pod (`masq`) instead.
 */
export const portmapTable = (settings: PortmapSettings): NftTable => {
  const sets: Array<NftSet> = []
  const dnat: Array<string> = []
  const snat: Array<string> = []
  for (const { v, nft, addr } of FAMILIES) {
    const conditions = (v === "4" ? settings.conditionsV4 : settings.conditionsV6).join(" ")
    const when = conditions === "" ? "" : `${conditions} `
    sets.push({ name: `hostdnat${v}`, type: `${addr} . ${PORT}`, map: `${addr} . inet_service` }, { name: `dnat${v}`, type: PORT, map: `${addr} . inet_service` })
    dnat.push(
      `${when}dnat ${nft} to ${nft} daddr . meta l4proto . th dport map @hostdnat${v}`,
      `${when}fib daddr type local dnat ${nft} to meta l4proto . th dport map @dnat${v}`
    )
    if (settings.masqAll) {
      sets.push({ name: `masq${v}`, type: `${addr} . ${PORT}` })
      snat.push(`ct status dnat ${nft} daddr . meta l4proto . th dport @masq${v} masquerade`)
    } else if (settings.snat) {
      sets.push({ name: `hairpin${v}`, type: `${addr} . ${addr} . ${PORT}` })
      snat.push(`${nft} saddr . ${nft} daddr . meta l4proto . th dport @hairpin${v} masquerade`)
      if (v === "4") {
        sets.push({ name: "local4", type: `${addr} . ${PORT}` })
        snat.push(`ip saddr 127.0.0.0/8 ip daddr . meta l4proto . th dport @local4 masquerade`)
      }
    }
  }
  const chain = (name: "prerouting" | "output" | "postrouting", rules: Array<string>): NftChain => ({
    name,
    base: { type: "nat", hook: name, priority: name === "postrouting" ? SNAT_PRIORITY : DNAT_PRIORITY },
    rules
  })
  return keyedTable("pm", settings.network, {
    family: "inet",
    sets,
    chains: [chain("prerouting", dnat), chain("output", dnat), ...(snat.length > 0 ? [chain("postrouting", snat)] : [])]
  })
}

/** What every hostPort table of the network is named with (GC). */
export const portmapTablePrefix = (network: string): string => keyedTablePrefix("pm", network)

/** A pod's elements in its network's hostPort table: its DNAT entries and masquerade keys (no duplicates). */
export const portmapElements = (settings: PortmapSettings, podIps: ReadonlyArray<string>): Array<OwnedElement> => {
  const elements = new Map<string, OwnedElement>()
  const put = (element: OwnedElement) => elements.set(`${element.set} ${element.key}`, element)
  for (const text of podIps) {
    const ip = parseIp(text)
    if (ip === undefined) continue
    const pod = formatIp(ip)
    const v = ip.family === 4 ? "4" : "6"
    for (const mapping of settings.mappings) {
      const host = mapping.hostIP === undefined ? undefined : parseIp(mapping.hostIP)
      if (host !== undefined && host.family !== ip.family) continue
      const port = `${mapping.protocol} . ${mapping.hostPort}`
      const value = `${pod} . ${mapping.containerPort}`
      put(host !== undefined && !isUnspecified(mapping.hostIP!)
        ? { set: `hostdnat${v}`, key: `${formatIp(host)} . ${port}`, value }
        : { set: `dnat${v}`, key: port, value })
      const toPod = `${pod} . ${mapping.protocol} . ${mapping.containerPort}`
      if (settings.masqAll) put({ set: `masq${v}`, key: toPod })
      else if (settings.snat) {
        put({ set: `hairpin${v}`, key: `${pod} . ${toPod}` })
        if (v === "4") put({ set: "local4", key: toPod })
      }
    }
  }
  return [...elements.values()]
}

/** UDP mappings whose stale conntrack entries must go (they would bypass the new DNAT). */
export const udpFlushes = (mappings: ReadonlyArray<Mapping>, families: ReadonlySet<4 | 6>) =>
  mappings
    .filter((mapping) => mapping.protocol === "udp")
    .flatMap((mapping) => [...families].map((family) => ({ family, protocol: "udp" as const, dstPort: mapping.hostPort })))

/** The shared chains of the layout before per-attachment chains (rules found by owner comment). */
export const LEGACY_CHAINS: ReadonlyArray<string> = ["TSCNI-PM-DNAT", "TSCNI-PM-MASQ"]

const LOCAL = ["-m", "addrtype", "--dst-type", "LOCAL"]

/** tscni's shared chain (nat, both families) the attachments' DNAT chains are entered from, hooked like the reference's CNI-HOSTPORT-DNAT. */
export const HOSTPORT_ENTRY: IptablesChain = {
  name: "TSCNI-HOSTPORTS",
  jumpFrom: [{ chain: "PREROUTING", position: "append", match: LOCAL }, { chain: "OUTPUT", position: "append", match: LOCAL }]
}
/**
 * The shared chain the attachments' masquerade chains (marked hairpin/localhost connections
 * to the pod) are entered from: first in POSTROUTING, so no other masquerade comes first.
 * Only with tscni's own mark bit, not with externalSetMarkChain.
 */
export const HOSTPORT_MASQ_ENTRY: IptablesChain = { name: "TSCNI-HP-MASQ", jumpFrom: [{ chain: "POSTROUTING", position: "insert" }] }

/** An attachment's chains: its DNATs (`TSCNI-HP-<key>`) and its masquerade (`TSCNI-HPM-<key>`). */
export const hostportChains = (attachmentKey: string) => ({
  dnat: `TSCNI-HP-${attachmentKey.toUpperCase()}`,
  masq: `TSCNI-HPM-${attachmentKey.toUpperCase()}`
})

const target = (family: 4 | 6, podIp: string, port: number): string => (family === 4 ? `${podIp}:${port}` : `[${podIp}]:${port}`)

/** `0x2000/0x2000` for bit 13. */
export const markOf = (bit: number): string => {
  const value = `0x${(2 ** bit).toString(16)}`
  return `${value}/${value}`
}

/** An address with its prefix; a bare address is a host route's. */
const asCidr = (address: string): Cidr | undefined => {
  const ip = address.includes("/") ? undefined : parseIp(address)
  return ip !== undefined ? { ip, prefix: bits(ip.family) } : parseCidr(address)
}

/** Condition strings as iptables arguments: each may hold several, separated by spaces. */
const conditionArgs = (conditions: ReadonlyArray<string>): Array<string> => conditions.flatMap((c) => c.trim().split(/\s+/)).filter((a) => a !== "")

/**
 * The iptables rules of one pod's mappings, one batch per family with the same meaning as
 * the reference's iptables portmap, in chains of the attachment's own:
 * - its DNAT chain (entered from TSCNI-HOSTPORTS, newest pod first, so the most recent pod
 *   using a host port wins), per mapping: with `snat`, mark connections for masquerade —
 *   from the pod's network (hairpin; from anywhere with `masqAll`) and, for IPv4, from
 *   127.0.0.0/8 — then DNAT;
 * - the mark is bit `markMasqBit` (MARK --set-xmark), or a jump to `externalSetMarkChain`
 *   whose owner masquerades (e.g. Kubernetes' KUBE-MARK-MASQ);
 * - with our own mark, its masquerade chain (entered from TSCNI-HP-MASQ) masquerades
 *   marked connections to the pod.
 * `podAddresses` are the pod's addresses in CIDR form (the prefix gives the hairpin source).
 */
export const portmapPodBatches = (
  settings: PortmapSettings,
  podAddresses: ReadonlyArray<string>,
  owner: string,
  chains: ReturnType<typeof hostportChains>
): Array<IptablesPodBatch> => {
  const external = settings.externalSetMarkChain
  const mark = markOf(settings.markMasqBit)
  const markTarget = external !== undefined ? ["-j", external] : ["-j", "MARK", "--set-xmark", mark]
  const batches: Array<IptablesPodBatch> = []
  for (const family of [4, 6] as const) {
    const dnat: Array<Array<string>> = []
    const masq: Array<Array<string>> = []
    for (const address of podAddresses) {
      const cidr = asCidr(address)
      if (cidr?.ip.family !== family) continue
      const podIp = address.split("/")[0]!
      const network = formatCidr(networkOf(cidr))
      const conditions = conditionArgs(family === 4 ? settings.conditionsV4 : settings.conditionsV6)
      let marked = false
      for (const mapping of settings.mappings) {
        if (mapping.hostIP !== undefined && parseIp(mapping.hostIP)?.family !== family) continue
        const destination = mapping.hostIP !== undefined && !isUnspecified(mapping.hostIP) ? ["-d", mapping.hostIP] : []
        const base = [...destination, "-p", mapping.protocol, "--dport", String(mapping.hostPort), ...conditions]
        if (settings.snat) {
          dnat.push([...base, "-s", settings.masqAll ? (family === 4 ? "0.0.0.0/0" : "::/0") : network, ...markTarget])
          if (family === 4 && !settings.masqAll) dnat.push([...base, "-s", "127.0.0.0/8", ...markTarget])
          marked = true
        }
        dnat.push([...base, "-j", "DNAT", "--to-destination", target(family, podIp, mapping.containerPort)])
      }
      if (marked && external === undefined) masq.push(["-d", `${podIp}/${family === 4 ? 32 : 128}`, "-m", "mark", "--mark", mark, "-j", "MASQUERADE"])
    }
    if (dnat.length === 0) continue
    batches.push({
      family,
      table: "nat",
      comment: owner,
      chains: [
        { name: chains.dnat, entry: HOSTPORT_ENTRY, position: "insert", rules: dnat },
        ...(masq.length > 0 ? [{ name: chains.masq, entry: HOSTPORT_MASQ_ENTRY, rules: masq }] : [])
      ]
    })
  }
  return batches
}
