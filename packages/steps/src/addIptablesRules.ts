import { Effect, Schema } from "effect"
import {
  Backend,
  type BackendError,
  IpFamily,
  IptablesBuiltinChain,
  type IptablesBatch,
  IptablesTable,
  iptablesTarget,
  IPTABLES_JUMP_COMMENT
} from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreAbsent } from "./internal.ts"

/** One owner's iptables rules in one table of one family (one transaction). */
export interface AddIptablesRulesInput {
  readonly netns: string
  readonly batch: IptablesBatch
}

/** Enough to remove exactly these rules (by owner comment) and to check they, their chains and jumps are there. */
export const AddIptablesRulesHandle = Schema.Struct({
  netns: Schema.String,
  family: IpFamily,
  table: IptablesTable,
  comment: Schema.String,
  count: Schema.Number,
  /** the batch's chains with the built-in chains that jump into them */
  chains: Schema.Array(Schema.Struct({ name: Schema.String, jumpFrom: Schema.Array(IptablesBuiltinChain) }))
})
export type AddIptablesRulesHandle = typeof AddIptablesRulesHandle.Type

const STEP = "addIptablesRules"

/** iptables and ip6tables: an owner's rules may be in either. */
export const IP_FAMILIES: ReadonlyArray<IpFamily> = [4, 6]

/**
 * The handles DEL undoes for one owner, rebuilt without ADD's memory: its rules in `table`
 * of both families (undo deletes by comment, so nothing else of the handle is needed).
 */
export const iptablesOwnerHandles = (netns: string, table: IptablesTable, comment: string): Array<AddIptablesRulesHandle> =>
  IP_FAMILIES.map((family) => ({ netns, family, table, comment, count: 0, chains: [] }))

/** The handle a batch installed in netns gives: what CHECK rebuilds from the config. */
export const iptablesRulesHandle = (netns: string, batch: IptablesBatch): AddIptablesRulesHandle => ({
  netns,
  family: batch.family,
  table: batch.table,
  comment: batch.comment,
  count: batch.rules.length,
  chains: batch.chains.map((chain) => ({ name: chain.name, jumpFrom: (chain.jumpFrom ?? []).map((jump) => jump.chain) }))
})

/**
 * Installs one owner's iptables rules (a pod's masquerade, its hostPort DNATs) in one
 * atomic iptables-restore, the iptables counterpart of addFilterRules. Undo removes every
 * rule of that owner in the table — also ones a killed earlier ADD left — and the chains
 * that leaves empty with their jumps; a host without iptables for the family can hold
 * none, so Unsupported counts as already gone.
 */
export const addIptablesRules = makeStep<AddIptablesRulesInput, AddIptablesRulesHandle, BackendError, Backend>({
  name: STEP,
  handle: AddIptablesRulesHandle,
  apply: (input) =>
    Effect.gen(function*() {
      yield* (yield* Backend).addIptablesRules(input.netns, input.batch)
      return iptablesRulesHandle(input.netns, input.batch)
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      yield* ignoreAbsent(
        (yield* Backend).deleteIptablesRules(handle.netns, { family: handle.family, table: handle.table, comment: handle.comment })
      )
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const listing = yield* (yield* Backend).listIptablesRules(handle.netns, { family: handle.family, table: handle.table })
      const where = `iptables${handle.family === 6 ? " (IPv6)" : ""} table ${handle.table}`
      const mine = listing.rules.filter((rule) => rule.comment === handle.comment).length
      yield* ensure(STEP, mine === handle.count, () => `${where} holds ${mine} rule(s) for ${handle.comment}, expected ${handle.count}`)
      for (const chain of handle.chains) {
        yield* ensure(STEP, listing.chains.includes(chain.name), () => `${where} has no chain ${chain.name}`)
        for (const from of chain.jumpFrom) {
          const jumps = listing.rules.some((rule) =>
            rule.chain === from && rule.comment === IPTABLES_JUMP_COMMENT && iptablesTarget(rule.args) === chain.name
          )
          yield* ensure(STEP, jumps, () => `${where}: nothing jumps from ${from} into ${chain.name}`)
        }
      }
    })
})
