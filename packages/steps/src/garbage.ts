import { Effect } from "effect"
import { CheckFailed } from "@tscni/engine"
import { Backend, type BackendError, type IptablesTable, iptablesTarget, type LinkInfo, type NftTableRef } from "@tscni/backend"
import { aliasPrefix, attachmentKey, hostVethName } from "./attachment.ts"
import { IP_FAMILIES } from "./iptablesPodChains.ts"
import { ignoreAbsent, ignoreNotFound } from "./internal.ts"
import { removeTableIfUnused } from "./nftElements.ts"

/** An attachment the runtime still considers valid (GC's `cni.dev/valid-attachments`). */
export interface Attachment {
  readonly containerID: string
  readonly ifname: string
}

/**
 * The owner comments (`<network tag>:<attachment key>`) of one network that belong to
 * attachments no longer valid; other networks' comments are never among them.
 */
const staleOwners = (
  comments: Iterable<string>,
  networkTag: string,
  valid: ReadonlyArray<Attachment>
): ReadonlySet<string> => {
  const keep = new Set(valid.map((a) => attachmentKey(a.containerID, a.ifname)))
  const prefix = `${networkTag}:`
  const stale = new Set<string>()
  for (const comment of comments) {
    if (comment.startsWith(prefix) && !keep.has(comment.slice(prefix.length))) stale.add(comment)
  }
  return stale
}

/**
 * GC of a network's keyed tables (those whose name starts with `prefix`): the elements of
 * attachments no longer valid go, and a table left with none goes too.
 */
export const collectStaleNftElements = (
  netns: string,
  prefix: string,
  networkTag: string,
  valid: ReadonlyArray<Attachment>
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    for (const table of (yield* ignoreAbsent(backend.listNftTables(netns, prefix))) ?? []) {
      const elements = (yield* ignoreAbsent(backend.listNftElements(netns, table))) ?? []
      const stale = staleOwners(elements.map((element) => element.comment), networkTag, valid)
      const doomed = elements.filter((element) => stale.has(element.comment)).map(({ set, key }) => ({ set, key }))
      if (doomed.length > 0) yield* ignoreAbsent(backend.deleteNftElements(netns, table, doomed))
      yield* removeTableIfUnused(netns, table)
    }
  })

/**
 * GC of a network's per-attachment iptables chains: those entered from one of `entries`
 * by a jump whose owner is no longer valid, in both families.
 */
export const collectStaleIptablesPodChains = (
  netns: string,
  table: IptablesTable,
  entries: ReadonlyArray<string>,
  networkTag: string,
  valid: ReadonlyArray<Attachment>
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    for (const family of IP_FAMILIES) {
      const listing = yield* ignoreAbsent(backend.listIptablesChains(netns, { family, table, chains: entries }))
      const jumps = (listing?.rules ?? []).filter((rule) => entries.includes(rule.chain))
      const stale = staleOwners(jumps.map((rule) => rule.comment), networkTag, valid)
      for (const jump of jumps) {
        const target = iptablesTarget(jump.args)
        if (!stale.has(jump.comment) || target === undefined) continue
        yield* ignoreAbsent(backend.deleteIptablesPodChains(netns, { family, table, comment: jump.comment, chains: [{ name: target, entry: jump.chain }] }))
      }
    }
  })

/** GC of a table of the layout before keyed tables (rules found by owner comment). */
export const collectStaleFilterRules = (
  netns: string,
  table: NftTableRef,
  networkTag: string,
  valid: ReadonlyArray<Attachment>
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const rules = (yield* ignoreAbsent(backend.listFilterRules(netns, table))) ?? []
    for (const owner of staleOwners(rules.map((rule) => rule.comment), networkTag, valid)) {
      yield* ignoreAbsent(backend.deleteFilterRules(netns, table, owner))
    }
  })

/**
 * The same for iptables rules of the layout before per-attachment chains, in both
 * families: the table is read whole only where one of `chains` (that layout's shared
 * chains) still exists.
 */
export const collectStaleIptablesRules = (
  netns: string,
  table: IptablesTable,
  chains: ReadonlyArray<string>,
  networkTag: string,
  valid: ReadonlyArray<Attachment>
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    for (const family of IP_FAMILIES) {
      const old = yield* ignoreAbsent(backend.listIptablesChains(netns, { family, table, chains }))
      if (old === undefined || old.chains.length === 0) continue
      for (const owner of staleOwners(old.rules.map((rule) => rule.comment), networkTag, valid)) {
        yield* ignoreAbsent(backend.deleteIptablesRules(netns, { family, table, comment: owner }))
      }
    }
  })

/**
 * What DEL removes of the layout before keyed tables: the owner's rules in those of
 * `tables` that still exist (one listing of table names says which; usually none).
 */
export const removeLegacyFilterRules = (netns: string, tables: ReadonlyArray<NftTableRef>, owner: string): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const present = (yield* ignoreAbsent(backend.listNftTables(netns, "tscni-"))) ?? []
    for (const table of tables) {
      if (!present.some((p) => p.family === table.family && p.name === table.name)) continue
      yield* ignoreAbsent(backend.deleteFilterRules(netns, table, owner))
    }
  })

/** The same for iptables: the owner's rules in the old shared `chains`, where they still exist. */
export const removeLegacyIptablesRules = (
  netns: string,
  table: IptablesTable,
  chains: ReadonlyArray<string>,
  owner: string
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    for (const family of IP_FAMILIES) {
      const old = yield* ignoreAbsent(backend.listIptablesChains(netns, { family, table, chains }))
      if (old === undefined || !old.rules.some((rule) => rule.comment === owner)) continue
      yield* ignoreAbsent(backend.deleteIptablesRules(netns, { family, table, comment: owner }))
    }
  })

/**
 * GC of links: deletes the links of `netns` that `isOurs` claims (by kind, name prefix and
 * the alias naming the network; never another network's or a stranger's) and whose name
 * is not among those the valid attachments would have.
 */
export const collectStaleLinks = (
  netns: string,
  isOurs: (link: LinkInfo) => boolean,
  validNames: ReadonlySet<string>
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    for (const link of yield* backend.listLinks(netns)) {
      if (isOurs(link) && !validNames.has(link.name)) yield* ignoreNotFound(backend.deleteLink(netns, link.name))
    }
  })

/**
 * CHECK of a pod added before the keyed layout: its rules are in the old tables (or, with
 * iptables, the old shared chains), not its elements. `check` failing is fine then, when
 * the old layout still holds rules of the pod's owner.
 */
export const checkOrLegacy = <E, R>(
  check: Effect.Effect<void, E | CheckFailed, R>,
  legacy: { readonly netns: string; readonly owner: string; readonly tables?: ReadonlyArray<NftTableRef>; readonly iptables?: { readonly table: IptablesTable; readonly chains: ReadonlyArray<string> } }
): Effect.Effect<void, E | CheckFailed | BackendError, R | Backend> =>
  check.pipe(Effect.catchIf((error): error is CheckFailed => error instanceof CheckFailed, (failure) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const present = legacy.tables === undefined ? [] : (yield* ignoreAbsent(backend.listNftTables(legacy.netns, "tscni-"))) ?? []
      for (const table of legacy.tables ?? []) {
        if (!present.some((p) => p.family === table.family && p.name === table.name)) continue
        if ((yield* backend.listFilterRules(legacy.netns, table)).some((rule) => rule.comment === legacy.owner)) return
      }
      for (const family of legacy.iptables === undefined ? [] : IP_FAMILIES) {
        const old = yield* ignoreAbsent(backend.listIptablesChains(legacy.netns, { family, table: legacy.iptables!.table, chains: legacy.iptables!.chains }))
        if (old?.rules.some((rule) => rule.comment === legacy.owner) === true) return
      }
      return yield* Effect.fail(failure)
    })))

/**
 * GC of a network's host veths (bridge, ptp): those carrying the network's alias (attached
 * to anything or not: a killed ADD's too) whose attachment is not among `valid`.
 */
export const collectStaleHostVeths = (
  netns: string,
  network: string,
  valid: ReadonlyArray<Attachment>
): Effect.Effect<void, BackendError, Backend> => {
  const prefix = aliasPrefix(network)
  return collectStaleLinks(
    netns,
    (link) => link.kind === "veth" && link.alias?.startsWith(prefix) === true,
    new Set(valid.map((a) => hostVethName(a.containerID, a.ifname)))
  )
}
