import type {
  AddressInfo,
  IpFamily,
  IptablesListedRule,
  IptablesTable,
  BridgeVlan,
  FilterRule,
  LinkInfo,
  NetnsPath,
  QdiscInfo,
  RedirectFilter,
  Route
} from "@tscni/backend"
import { formatIp } from "@tscni/ip"
import { addressInfos } from "./addresses.ts"
import { iptablesTables } from "./iptables.ts"
import { nftTablesOf } from "./nftSets.ts"
import { routesInOrder, toRoute } from "./routes.ts"
import { DEFAULT_BRIDGE_VLAN, type KernelState, linksInOrder, type NetnsState, toLinkInfo } from "./state.ts"
import { toQdiscInfo, toRedirectFilter } from "./tc.ts"

/** One VLAN of one bridge or bridge port. */
export interface BridgeVlanEntry extends BridgeVlan {
  readonly link: string
}

/** tscni's chains and rules in one iptables table of one family (tables without any are left out). */
export interface IptablesTableSnapshot {
  readonly family: IpFamily
  readonly table: IptablesTable
  readonly chains: ReadonlyArray<string>
  readonly rules: ReadonlyArray<IptablesListedRule>
}

/** Everything one namespace holds, as plain data in a stable order. */
export interface NetnsSnapshot {
  readonly links: ReadonlyArray<LinkInfo>
  /** by link index, then vid */
  readonly bridgeVlans: ReadonlyArray<BridgeVlanEntry>
  readonly addresses: ReadonlyArray<AddressInfo>
  readonly routes: ReadonlyArray<Route>
  readonly neighbors: ReadonlyArray<{ readonly link: string; readonly ip: string; readonly mac: string }>
  readonly fdb: ReadonlyArray<{ readonly link: string; readonly mac: string; readonly dst: string }>
  readonly sysctls: Readonly<Record<string, string>>
  readonly qdiscs: ReadonlyArray<QdiscInfo>
  readonly redirects: ReadonlyArray<RedirectFilter>
  readonly filterRules: ReadonlyArray<FilterRule>
  readonly iptables: ReadonlyArray<IptablesTableSnapshot>
  /** keyed nftables tables: skeleton and elements */
  readonly nftTables: ReadonlyArray<ReturnType<typeof nftTablesOf>[number]>
}

/**
 * The whole kernel as plain, deep-copied, JSON-serialisable data, so a test can assert
 * "the state after a failed ADD equals the state before". Counters (next ifindex, MAC
 * generator) are deliberately absent.
 */
export interface KernelSnapshot {
  readonly namespaces: Readonly<Record<NetnsPath, NetnsSnapshot>>
}

const snapshotNetns = (ns: NetnsState): NetnsSnapshot => ({
  links: linksInOrder(ns).map((l) => toLinkInfo(ns, l)),
  bridgeVlans: linksInOrder(ns).flatMap((l) =>
    [...l.vlans].sort((a, b) => a.vid - b.vid).map((v) => ({ link: l.name, vid: v.vid, pvid: v.pvid, untagged: v.untagged }))
  ),
  addresses: addressInfos(ns),
  routes: routesInOrder(ns).map((r) => toRoute(ns, r)),
  neighbors: ns.neighbors
    .map((n) => ({ link: ns.links.get(n.linkIndex)?.name ?? "", ip: formatIp(n.ip), mac: n.mac }))
    .sort((a, b) => `${a.link} ${a.ip}`.localeCompare(`${b.link} ${b.ip}`)),
  fdb: ns.fdb
    .map((f) => ({ link: ns.links.get(f.linkIndex)?.name ?? "", mac: f.mac, dst: formatIp(f.dst) }))
    .sort((a, b) => `${a.link} ${a.mac}`.localeCompare(`${b.link} ${b.mac}`)),
  sysctls: Object.fromEntries([...ns.sysctls.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  qdiscs: [...ns.qdiscs]
    .sort((a, b) => a.linkIndex - b.linkIndex || a.parent.localeCompare(b.parent))
    .map((q) => toQdiscInfo(ns, q)),
  redirects: ns.redirects.map((r) => toRedirectFilter(ns, r)),
  filterRules: ns.filterRules.map((r) => ({ ...r })),
  // a table holding only its empty built-in chains reads as no table: iptables cannot remove one
  iptables: iptablesTables(ns)
    .filter(([, , listing]) => listing.chains.length > 0 || listing.rules.length > 0)
    .map(([family, table, listing]) => ({ family, table, chains: listing.chains, rules: listing.rules })),
  nftTables: nftTablesOf(ns)
})

/** Takes a snapshot; later changes to the kernel never show through it. */
export const takeSnapshot = (state: KernelState): KernelSnapshot =>
  structuredClone({
    namespaces: Object.fromEntries(
      [...state.namespaces.keys()].sort().flatMap((path) => {
        const ns = state.namespaces.get(path)
        return ns === undefined ? [] : [[path, snapshotNetns(ns)]]
      })
    )
  })

const EMPTY: NetnsSnapshot = {
  links: [],
  bridgeVlans: [],
  addresses: [],
  routes: [],
  neighbors: [],
  fdb: [],
  sysctls: {},
  qdiscs: [],
  redirects: [],
  filterRules: [],
  iptables: [],
  nftTables: []
}

const formatRoute = (r: Route): string =>
  [
    r.dst,
    r.gateway === undefined ? "" : `via ${r.gateway}`,
    r.link === undefined ? "" : `dev ${r.link}`,
    r.scope === undefined ? "" : `scope ${r.scope}`,
    r.priority === undefined ? "" : `metric ${r.priority}`,
    r.table === undefined ? "" : `table ${r.table}`,
    r.mtu === undefined ? "" : `mtu ${r.mtu}`,
    r.advmss === undefined ? "" : `advmss ${r.advmss}`,
    r.src === undefined ? "" : `src ${r.src}`
  ]
    .filter((part) => part !== "")
    .join(" ")

/**
 * Protocol changes of routes that are otherwise the same (a connected route deleted and
 * re-added by hand, say): the route lines leave the protocol out, as `ip route` leaves
 * out boot, so that they read like the kernel's own listing.
 */
const diffRouteProtocols = (before: ReadonlyArray<Route>, after: ReadonlyArray<Route>): Array<string> => {
  const protocols = (routes: ReadonlyArray<Route>) => {
    const byRoute = new Map<string, Array<string>>()
    for (const route of routes) {
      const key = formatRoute(route)
      byRoute.set(key, [...(byRoute.get(key) ?? []), String(route.protocol ?? "boot")].sort())
    }
    return byRoute
  }
  const b = protocols(before)
  const a = protocols(after)
  return [...b.keys()].sort().flatMap((key) => {
    const from = b.get(key) ?? []
    const to = a.get(key) ?? []
    if (from.length !== to.length || from.join() === to.join()) return []
    return [`~ route ${key} protocol: ${from.join(",")} → ${to.join(",")}`]
  })
}

const formatVlan = (v: BridgeVlanEntry): string =>
  [`${v.link} vid ${v.vid}`, v.pvid ? "pvid" : "", v.untagged ? "untagged" : ""].filter((p) => p !== "").join(" ")

const isDefaultVlan = (v: BridgeVlan): boolean =>
  v.vid === DEFAULT_BRIDGE_VLAN.vid && v.pvid === DEFAULT_BRIDGE_VLAN.pvid && v.untagged === DEFAULT_BRIDGE_VLAN.untagged

/** Links that hold bridge VLANs in a snapshot: bridges and bridge ports. */
const vlanCarriers = (s: NetnsSnapshot): Set<string> =>
  new Set(s.links.filter((l) => l.kind === "bridge" || l.master !== undefined).map((l) => l.name))

/**
 * Bridge VLAN differences. VLAN 1 pvid untagged comes with every new bridge and port (and
 * goes with them), so it is not reported for a link that only became, or stopped being, a
 * bridge or port: that change already has its own line. Any other VLAN, and any change
 * to the VLANs of a link that is a bridge or port on both sides, is reported.
 */
const diffBridgeVlans = (before: NetnsSnapshot, after: NetnsSnapshot): Array<string> => {
  const inBoth = new Set([...vlanCarriers(before)].filter((name) => vlanCarriers(after).has(name)))
  const relevant = (v: BridgeVlanEntry) => inBoth.has(v.link) || !isDefaultVlan(v)
  return diffBags(
    "bridge vlan",
    before.bridgeVlans.filter(relevant).map(formatVlan),
    after.bridgeVlans.filter(relevant).map(formatVlan)
  )
}

const formatRule = (r: FilterRule): string =>
  `${r.family} ${r.table} ${r.chain} ${JSON.stringify(r.rule)} comment ${JSON.stringify(r.comment)}`

/** Lines for items present a different number of times before and after (multiset difference). */
const diffBags = (what: string, before: ReadonlyArray<string>, after: ReadonlyArray<string>): Array<string> => {
  const counts = new Map<string, number>()
  for (const item of before) counts.set(item, (counts.get(item) ?? 0) - 1)
  for (const item of after) counts.set(item, (counts.get(item) ?? 0) + 1)
  const lines: Array<string> = []
  for (const [item, count] of counts) {
    for (let i = 0; i < Math.abs(count); i++) lines.push(`${count < 0 ? "-" : "+"} ${what} ${item}`)
  }
  return lines.sort((a, b) => (a.slice(1) < b.slice(1) ? -1 : a.slice(1) > b.slice(1) ? 1 : a < b ? -1 : 1))
}

const show = (value: unknown): string => (value === undefined ? "(none)" : JSON.stringify(value))

const diffLinks = (before: ReadonlyArray<LinkInfo>, after: ReadonlyArray<LinkInfo>): Array<string> => {
  const lines: Array<string> = []
  const byName = (links: ReadonlyArray<LinkInfo>) => new Map(links.map((l) => [l.name, l]))
  const b = byName(before)
  const a = byName(after)
  for (const name of [...new Set([...b.keys(), ...a.keys()])].sort()) {
    const old = b.get(name)
    const now = a.get(name)
    if (old === undefined && now !== undefined) lines.push(`+ link ${name} (${now.kind}, index ${now.index})`)
    else if (old !== undefined && now === undefined) lines.push(`- link ${name} (${old.kind}, index ${old.index})`)
    else if (old !== undefined && now !== undefined) {
      const fields = [...new Set([...Object.keys(old), ...Object.keys(now)])].sort()
      for (const field of fields) {
        const from = show(Reflect.get(old, field))
        const to = show(Reflect.get(now, field))
        if (from !== to) lines.push(`~ link ${name} ${field}: ${from} → ${to}`)
      }
    }
  }
  return lines
}

type Sysctls = Readonly<Record<string, string>>

const diffSysctls = (before: Sysctls, after: Sysctls): Array<string> =>
  [...new Set([...Object.keys(before), ...Object.keys(after)])].sort().flatMap((key) => {
    const from = before[key]
    const to = after[key]
    if (from === to) return []
    if (from === undefined) return [`+ sysctl ${key} = ${to}`]
    if (to === undefined) return [`- sysctl ${key} (was ${from})`]
    return [`~ sysctl ${key}: ${from} → ${to}`]
  })

/** iptables chains and rules added or removed, and rules whose order changed. */
const diffIptables = (before: NetnsSnapshot, after: NetnsSnapshot): Array<string> => {
  const chains = (s: NetnsSnapshot) => s.iptables.flatMap((t) => t.chains.map((c) => `${t.family} ${t.table} ${c}`))
  const rules = (s: NetnsSnapshot) =>
    s.iptables.flatMap((t) =>
      t.rules.map((r) => `${t.family} ${t.table} ${r.chain} ${JSON.stringify(r.args.join(" "))} comment ${JSON.stringify(r.comment)}`)
    )
  const lines = [...diffBags("iptables chain", chains(before), chains(after)), ...diffBags("iptables rule", rules(before), rules(after))]
  const reordered = lines.length === 0 && JSON.stringify(before.iptables) !== JSON.stringify(after.iptables)
  return [...lines, ...(reordered ? ["~ iptables rules: same rules, different order"] : [])]
}

/** Keyed tables added or removed (with their skeleton), and elements added, removed or changed. */
const diffNftTables = (before: NetnsSnapshot, after: NetnsSnapshot): Array<string> => {
  const skeletons = (s: NetnsSnapshot) =>
    s.nftTables.map((t) => `${t.family} ${t.name} ${JSON.stringify({ sets: t.sets, chains: t.chains })}`)
  const elements = (s: NetnsSnapshot) =>
    s.nftTables.flatMap((t) =>
      t.elements.map((e) => `${t.family} ${t.name} ${e.set} { ${e.key}${e.value === undefined ? "" : ` : ${e.value}`} } comment ${JSON.stringify(e.comment)}`)
    )
  return [...diffBags("nft table", skeletons(before), skeletons(after)), ...diffBags("nft element", elements(before), elements(after))]
}

const diffNetns = (before: NetnsSnapshot, after: NetnsSnapshot): Array<string> => {
  const rules = diffBags("filter rule", before.filterRules.map(formatRule), after.filterRules.map(formatRule))
  const sameRulesReordered =
    rules.length === 0 && JSON.stringify(before.filterRules) !== JSON.stringify(after.filterRules)
  const bag = <T>(what: string, pick: (s: NetnsSnapshot) => ReadonlyArray<T>, show: (item: T) => string) =>
    diffBags(what, pick(before).map(show), pick(after).map(show))
  return [
    ...diffLinks(before.links, after.links),
    ...diffBridgeVlans(before, after),
    ...bag("address", (s) => s.addresses, (a) => `${a.link} ${a.cidr}`),
    ...bag("route", (s) => s.routes, formatRoute),
    ...diffRouteProtocols(before.routes, after.routes),
    ...bag("neighbour", (s) => s.neighbors, (n) => `${n.ip} lladdr ${n.mac} dev ${n.link}`),
    ...bag("fdb entry", (s) => s.fdb, (f) => `${f.mac} dst ${f.dst} dev ${f.link}`),
    ...diffSysctls(before.sysctls, after.sysctls),
    ...bag("qdisc", (s) => s.qdiscs, (q) => JSON.stringify(q)),
    ...bag("redirect", (s) => s.redirects, (r) => `${r.link} → ${r.toLink}`),
    ...rules,
    ...(sameRulesReordered ? ["~ filter rules: same rules, different order"] : []),
    ...diffIptables(before, after),
    ...diffNftTables(before, after)
  ]
}

/** Human-readable differences between two snapshots, each line prefixed by its namespace; [] when equal. */
export const diffSnapshots = (before: KernelSnapshot, after: KernelSnapshot): ReadonlyArray<string> => {
  const paths = [...new Set([...Object.keys(before.namespaces), ...Object.keys(after.namespaces)])].sort()
  return paths.flatMap((path) => {
    const old = before.namespaces[path]
    const now = after.namespaces[path]
    const header = old === undefined ? [`+ netns ${path}`] : now === undefined ? [`- netns ${path}`] : []
    return [...header, ...diffNetns(old ?? EMPTY, now ?? EMPTY).map((line) => `${path}: ${line}`)]
  })
}
