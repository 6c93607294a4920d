import type { FilterRule, IptablesBatch, IptablesRuleSpec } from "@tscni/backend"
import { bits, type Cidr, formatCidr, networkOf, parseCidr, parseIp } from "@tscni/ip"
import type { Mapping, PortmapSettings } from "./config.ts"

/** tscni's nftables table for hostPort mappings (one per family: ip and ip6). */
export const PORTMAP_TABLE = "tscni-portmap"

/**
 * `0.0.0.0` / `::` as hostIP mean every local address of that family (as the reference
 * reads them): the mapping stays per family, with no address match.
 */
const isUnspecified = (hostIP: string): boolean => parseIp(hostIP)?.value === 0n

const DNAT_PRIORITY = -100
const SNAT_PRIORITY = 100

const chain = (family: "ip" | "ip6", name: "prerouting" | "output" | "postrouting", owner: string, rule: string): FilterRule => ({
  family,
  table: PORTMAP_TABLE,
  chain: name,
  rule,
  comment: owner,
  baseChain: { type: "nat", hook: name, priority: name === "postrouting" ? SNAT_PRIORITY : DNAT_PRIORITY }
})

const target = (family: 4 | 6, podIp: string, port: number): string => (family === 4 ? `${podIp}:${port}` : `[${podIp}]:${port}`)

/**
 * The rules of one pod's mappings:
 * - DNAT in prerouting (traffic from elsewhere) and output (from the host itself) for
 *   every local address, or only `hostIP` when the mapping names one;
 * - with `snat` (default): masquerade a pod reaching its own hostPort (hairpin) and, for
 *   IPv4, the host reaching it from 127.0.0.0/8 (which needs route_localnet);
 * - with `masqAll`: masquerade everything that was DNATed to the pod instead.
 */
export const portmapRules = (
  settings: PortmapSettings,
  podIps: ReadonlyArray<string>,
  owner: string
): Array<FilterRule> => {
  const rules: Array<FilterRule> = []
  for (const podIp of podIps) {
    const family = parseIp(podIp)?.family
    if (family === undefined) continue
    const nft = family === 4 ? "ip" : "ip6"
    const conditions = (family === 4 ? settings.conditionsV4 : settings.conditionsV6).join(" ")
    for (const mapping of settings.mappings) {
      if (mapping.hostIP !== undefined && parseIp(mapping.hostIP)?.family !== family) continue
      const destination = mapping.hostIP !== undefined && !isUnspecified(mapping.hostIP)
        ? `${nft} daddr ${mapping.hostIP}`
        : "fib daddr type local"
      const match = [conditions, destination, `${mapping.protocol} dport ${mapping.hostPort}`].filter((part) => part !== "").join(" ")
      const dnat = `${match} dnat to ${target(family, podIp, mapping.containerPort)}`
      rules.push(chain(nft, "prerouting", owner, dnat), chain(nft, "output", owner, dnat))
      const toPod = `${nft} daddr ${podIp} ${mapping.protocol} dport ${mapping.containerPort}`
      if (settings.masqAll) {
        rules.push(chain(nft, "postrouting", owner, `ct status dnat ${toPod} masquerade`))
      } else if (settings.snat) {
        rules.push(chain(nft, "postrouting", owner, `${nft} saddr ${podIp} ${toPod} masquerade`))
        if (family === 4) rules.push(chain(nft, "postrouting", owner, `ip saddr 127.0.0.0/8 ${toPod} masquerade`))
      }
    }
  }
  return rules
}

/** UDP mappings whose stale conntrack entries must go (they would bypass the new DNAT). */
export const udpFlushes = (mappings: ReadonlyArray<Mapping>, families: ReadonlySet<4 | 6>) =>
  mappings
    .filter((mapping) => mapping.protocol === "udp")
    .flatMap((mapping) => [...families].map((family) => ({ family, protocol: "udp" as const, dstPort: mapping.hostPort })))

/** tscni's iptables chains for hostPort mappings (nat table, both families). */
export const PORTMAP_DNAT_CHAIN = "TSCNI-PM-DNAT"
/**
 * Masquerades marked (hairpin/localhost) connections to a pod; only used with tscni's own
 * mark bit, not with externalSetMarkChain.
 */
export const PORTMAP_MASQ_CHAIN = "TSCNI-PM-MASQ"

const LOCAL = ["-m", "addrtype", "--dst-type", "LOCAL"]

/** The chains a family's batch declares: DNAT hooked like the reference's CNI-HOSTPORT-DNAT, MASQ first in POSTROUTING. */
const iptablesChains = (ownMark: boolean): IptablesBatch["chains"] => [
  {
    name: PORTMAP_DNAT_CHAIN,
    jumpFrom: [{ chain: "PREROUTING", position: "append", match: LOCAL }, { chain: "OUTPUT", position: "append", match: LOCAL }]
  },
  // inserted, so the bridge's masquerade rules (and others') cannot come first
  ...(ownMark ? [{ name: PORTMAP_MASQ_CHAIN, jumpFrom: [{ chain: "POSTROUTING" as const, position: "insert" as const }] }] : [])
]

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
 * the reference's iptables portmap (its CNI-HOSTPORT-* layout is not reproduced):
 * - in TSCNI-PM-DNAT (entered from PREROUTING and OUTPUT for local destinations), per
 *   mapping: with `snat`, mark connections for masquerade — from the pod's network
 *   (hairpin; from anywhere with `masqAll`) and, for IPv4, from 127.0.0.0/8 — then DNAT.
 *   Newer pods' rules go first, so the most recent pod using a host port wins;
 * - the mark is bit `markMasqBit` (MARK --set-xmark), or a jump to `externalSetMarkChain`
 *   whose owner masquerades (e.g. Kubernetes' KUBE-MARK-MASQ);
 * - with our own mark, TSCNI-PM-MASQ (first in POSTROUTING) masquerades marked
 *   connections to the pod.
 * `podAddresses` are the pod's addresses in CIDR form (the prefix gives the hairpin source).
 */
export const portmapIptablesBatches = (
  settings: PortmapSettings,
  podAddresses: ReadonlyArray<string>,
  owner: string
): Array<IptablesBatch> => {
  const external = settings.externalSetMarkChain
  const mark = markOf(settings.markMasqBit)
  const markTarget = external !== undefined ? ["-j", external] : ["-j", "MARK", "--set-xmark", mark]
  const batches: Array<IptablesBatch> = []
  for (const family of [4, 6] as const) {
    const rules: Array<IptablesRuleSpec> = []
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
        const dnat = (args: Array<string>): IptablesRuleSpec => ({ chain: PORTMAP_DNAT_CHAIN, args, position: "insert" })
        if (settings.snat) {
          rules.push(dnat([...base, "-s", settings.masqAll ? (family === 4 ? "0.0.0.0/0" : "::/0") : network, ...markTarget]))
          if (family === 4 && !settings.masqAll) rules.push(dnat([...base, "-s", "127.0.0.0/8", ...markTarget]))
          marked = true
        }
        rules.push(dnat([...base, "-j", "DNAT", "--to-destination", target(family, podIp, mapping.containerPort)]))
      }
      if (marked && external === undefined) {
        rules.push({
          chain: PORTMAP_MASQ_CHAIN,
          args: ["-d", `${podIp}/${family === 4 ? 32 : 128}`, "-m", "mark", "--mark", mark, "-j", "MASQUERADE"]
        })
      }
    }
    if (rules.length > 0) {
      batches.push({ family, table: "nat", chains: iptablesChains(settings.snat && external === undefined), rules, comment: owner })
    }
  }
  return batches
}
