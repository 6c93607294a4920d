import { Effect, Schema } from "effect"
import { Backend, type BackendError, type FilterRule } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreAbsent } from "./internal.ts"

/** Packet-filter rules of one owner (their common comment) in one of tscni's tables. */
export interface AddFilterRulesInput {
  readonly netns: string
  /** every rule must carry this table and comment */
  readonly rules: ReadonlyArray<FilterRule>
}

/** Enough to remove exactly these rules (by owner comment) and to check they are there. */
export const AddFilterRulesHandle = Schema.Struct({
  netns: Schema.String,
  table: Schema.String,
  comment: Schema.String,
  count: Schema.Number
})
export type AddFilterRulesHandle = typeof AddFilterRulesHandle.Type

const STEP = "addFilterRules"

/**
 * Installs one owner's rules (a pod's masquerade, its hostPort DNATs) in one atomic
 * transaction. Undo removes every rule of that owner in the table — also ones a killed
 * earlier ADD left — and the chains and table that leaves empty.
 */
export const addFilterRules = makeStep<AddFilterRulesInput, AddFilterRulesHandle, BackendError, Backend>({
  name: STEP,
  handle: AddFilterRulesHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const [first] = input.rules
      if (first === undefined) return yield* Effect.die(new Error("addFilterRules needs at least one rule"))
      if (input.rules.some((rule) => rule.table !== first.table || rule.comment !== first.comment)) {
        return yield* Effect.die(new Error("addFilterRules: all rules must share table and comment"))
      }
      yield* (yield* Backend).addFilterRules(input.netns, input.rules)
      return { netns: input.netns, table: first.table, comment: first.comment, count: input.rules.length }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      yield* ignoreAbsent((yield* Backend).deleteFilterRules(handle.netns, handle.table, handle.comment))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const rules = yield* (yield* Backend).listFilterRules(handle.netns, handle.table)
      const mine = rules.filter((rule) => rule.comment === handle.comment).length
      yield* ensure(STEP, mine === handle.count, () =>
        `table ${handle.table} holds ${mine} rule(s) for ${handle.comment}, expected ${handle.count}`)
    })
})
