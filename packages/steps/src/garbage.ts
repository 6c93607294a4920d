import { Effect } from "effect"
import { Backend, type BackendError, type IptablesTable, type LinkInfo } from "@tscni/backend"
import { attachmentKey } from "./attachment.ts"
import { IP_FAMILIES } from "./addIptablesRules.ts"
import { ignoreAbsent, ignoreNotFound } from "./internal.ts"

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

/** GC of one of tscni's nftables tables (a kernel without nftables holds nothing of ours). */
export const collectStaleFilterRules = (
  netns: string,
  table: string,
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

/** The same for one of iptables' tables, in both families. */
export const collectStaleIptablesRules = (
  netns: string,
  table: IptablesTable,
  networkTag: string,
  valid: ReadonlyArray<Attachment>
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    for (const family of IP_FAMILIES) {
      const listing = yield* ignoreAbsent(backend.listIptablesRules(netns, { family, table }))
      for (const owner of staleOwners((listing?.rules ?? []).map((rule) => rule.comment), networkTag, valid)) {
        yield* ignoreAbsent(backend.deleteIptablesRules(netns, { family, table, comment: owner }))
      }
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
