import type { FilterRule } from "@tscni/backend"
import { parseIp } from "@tscni/ip"
import type { Mapping, PortmapSettings } from "./config.ts"

/** tscni's nftables table for hostPort mappings (one per family: ip and ip6). */
export const PORTMAP_TABLE = "tscni-portmap"

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
      const destination = mapping.hostIP !== undefined ? `${nft} daddr ${mapping.hostIP}` : "fib daddr type local"
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
