import type { AddressInfo, FilterRule, LinkInfo, NetnsPath, QdiscInfo, RedirectFilter, Route } from "@tscni/backend"
import { addressInfos } from "./addresses.ts"
import { routesInOrder, toRoute } from "./routes.ts"
import { type KernelState, linksInOrder, type NetnsState, toLinkInfo } from "./state.ts"
import { toQdiscInfo, toRedirectFilter } from "./tc.ts"

/** Everything one namespace holds, as plain data in a stable order. */
export interface NetnsSnapshot {
  readonly links: ReadonlyArray<LinkInfo>
  readonly addresses: ReadonlyArray<AddressInfo>
  readonly routes: ReadonlyArray<Route>
  readonly sysctls: Readonly<Record<string, string>>
  readonly qdiscs: ReadonlyArray<QdiscInfo>
  readonly redirects: ReadonlyArray<RedirectFilter>
  readonly filterRules: ReadonlyArray<FilterRule>
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
  addresses: addressInfos(ns),
  routes: routesInOrder(ns).map((r) => toRoute(ns, r)),
  sysctls: Object.fromEntries([...ns.sysctls.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  qdiscs: [...ns.qdiscs]
    .sort((a, b) => a.linkIndex - b.linkIndex || a.parent.localeCompare(b.parent))
    .map((q) => toQdiscInfo(ns, q)),
  redirects: ns.redirects.map((r) => toRedirectFilter(ns, r)),
  filterRules: ns.filterRules.map((r) => ({ ...r }))
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
  addresses: [],
  routes: [],
  sysctls: {},
  qdiscs: [],
  redirects: [],
  filterRules: []
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

const diffNetns = (before: NetnsSnapshot, after: NetnsSnapshot): Array<string> => {
  const rules = diffBags("filter rule", before.filterRules.map(formatRule), after.filterRules.map(formatRule))
  const sameRulesReordered =
    rules.length === 0 && JSON.stringify(before.filterRules) !== JSON.stringify(after.filterRules)
  const bag = <T>(what: string, pick: (s: NetnsSnapshot) => ReadonlyArray<T>, show: (item: T) => string) =>
    diffBags(what, pick(before).map(show), pick(after).map(show))
  return [
    ...diffLinks(before.links, after.links),
    ...bag("address", (s) => s.addresses, (a) => `${a.link} ${a.cidr}`),
    ...bag("route", (s) => s.routes, formatRoute),
    ...diffSysctls(before.sysctls, after.sysctls),
    ...bag("qdisc", (s) => s.qdiscs, (q) => JSON.stringify(q)),
    ...bag("redirect", (s) => s.redirects, (r) => `${r.link} → ${r.toLink}`),
    ...rules,
    ...(sameRulesReordered ? ["~ filter rules: same rules, different order"] : [])
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
