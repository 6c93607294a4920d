import { Effect, Schema } from "effect"
import {
  Backend,
  type BackendError,
  IpFamily,
  IptablesChain,
  type IptablesPodBatch,
  IptablesPodChainRef,
  IptablesTable,
  iptablesTarget
} from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreAbsent } from "./internal.ts"

/** iptables and ip6tables: an owner's chains may be in either. */
export const IP_FAMILIES: ReadonlyArray<IpFamily> = [4, 6]

/** One owner's chains in one table of one family (one iptables-restore). */
export interface IptablesPodChainsInput {
  readonly netns: string
  readonly batch: IptablesPodBatch
}

/** Enough to remove the owner's chains by name and to check them, their rules and jumps. */
export const IptablesPodChainsHandle = Schema.Struct({
  netns: Schema.String,
  family: IpFamily,
  table: IptablesTable,
  comment: Schema.String,
  chains: Schema.Array(Schema.Struct({ ...IptablesPodChainRef.fields, rules: Schema.Number })),
  /** shared chains this ADD created: its rollback removes them again when nothing else uses them */
  createdEntries: Schema.Array(IptablesChain)
})
export type IptablesPodChainsHandle = typeof IptablesPodChainsHandle.Type

const STEP = "iptablesPodChains"

/** The batch's shared chains (with their hooks) among `names`. */
const entriesNamed = (batch: IptablesPodBatch, names: ReadonlyArray<string>): Array<IptablesChain> =>
  [...new Map(batch.chains.map((chain) => [chain.entry.name, chain.entry])).values()].filter((entry) => names.includes(entry.name))

/** The handle a batch gives (what CHECK rebuilds from the config). */
export const iptablesPodChainsHandle = (netns: string, batch: IptablesPodBatch): IptablesPodChainsHandle => ({
  netns,
  family: batch.family,
  table: batch.table,
  comment: batch.comment,
  chains: batch.chains.map((chain) => ({ name: chain.name, entry: chain.entry.name, rules: chain.rules.length })),
  createdEntries: []
})

/**
 * The handles DEL undoes for one owner without ADD's memory: its chains (named from the
 * attachment) in both families; a family the pod had no address of holds none.
 */
export const iptablesPodChainsHandles = (
  netns: string,
  table: IptablesTable,
  comment: string,
  chains: ReadonlyArray<IptablesPodChainRef>
): Array<IptablesPodChainsHandle> =>
  IP_FAMILIES.map((family) => ({ netns, family, table, comment, chains: chains.map((chain) => ({ ...chain, rules: 0 })), createdEntries: [] }))

/**
 * One owner's iptables rules in chains of its own (a pod's masquerade, its hostPort DNATs),
 * in one atomic iptables-restore; undo removes the chains and the jumps into them by name,
 * never reading the table. A chain left by an earlier, killed ADD of the same attachment is
 * replaced. A host without iptables for the family holds none (Unsupported is "gone").
 */
export const iptablesPodChains = makeStep<IptablesPodChainsInput, IptablesPodChainsHandle, BackendError, Backend>({
  name: STEP,
  handle: IptablesPodChainsHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const handle = iptablesPodChainsHandle(input.netns, input.batch)
      const added = yield* Effect.result(backend.addIptablesPodChains(input.netns, input.batch))
      if (added._tag === "Success") return { ...handle, createdEntries: entriesNamed(input.batch, added.success) }
      if (added.failure.reason !== "AlreadyExists") return yield* Effect.fail(added.failure)
      // the attachment's chains are there already: what a killed ADD left; replace them
      yield* backend.deleteIptablesPodChains(input.netns, handle)
      return { ...handle, createdEntries: entriesNamed(input.batch, yield* backend.addIptablesPodChains(input.netns, input.batch)) }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      yield* ignoreAbsent(backend.deleteIptablesPodChains(handle.netns, handle))
      for (const chain of handle.createdEntries) {
        yield* ignoreAbsent(backend.deleteIptablesChainIfEmpty(handle.netns, { family: handle.family, table: handle.table, chain }))
      }
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const names = [...new Set(handle.chains.flatMap((chain) => [chain.entry, chain.name]))]
      const listing = yield* (yield* Backend).listIptablesChains(handle.netns, { family: handle.family, table: handle.table, chains: names })
      const where = `iptables${handle.family === 6 ? " (IPv6)" : ""} table ${handle.table}`
      for (const chain of handle.chains) {
        const rules = listing.rules.filter((rule) => rule.chain === chain.name).length
        yield* ensure(STEP, listing.chains.includes(chain.name), () => `${where} has no chain ${chain.name}`)
        yield* ensure(STEP, rules === chain.rules, () => `${where}: ${chain.name} holds ${rules} rule(s), expected ${chain.rules}`)
        const jumps = listing.rules.some((rule) => rule.chain === chain.entry && rule.comment === handle.comment && iptablesTarget(rule.args) === chain.name)
        yield* ensure(STEP, jumps, () => `${where}: nothing of ${handle.comment} jumps from ${chain.entry} into ${chain.name}`)
      }
    })
})
