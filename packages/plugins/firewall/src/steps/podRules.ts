import { Effect, Schema } from "effect"
import { Backend, type BackendError, type FilterRule } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"

/** One pod's rules: all in one table, all with the pod's owner comment. */
export interface PodRulesInput {
  readonly netns: string
  readonly table: string
  readonly comment: string
  /** the pod addresses the rules are about (each must appear in some rule) */
  readonly addresses: ReadonlyArray<string>
  readonly rules: ReadonlyArray<FilterRule>
}

/** Enough to find the rules again (owner comment), to check them, and to remove them. */
export const PodRulesHandle = Schema.Struct({
  netns: Schema.String,
  table: Schema.String,
  comment: Schema.String,
  /** rules per chain */
  chains: Schema.Record(Schema.String, Schema.Number),
  addresses: Schema.Array(Schema.String),
  /** the same rules were already there (a repeated ADD): a rollback leaves them */
  adopted: Schema.Boolean
})
export type PodRulesHandle = typeof PodRulesHandle.Type

const STEP = "podRules"

const perChain = (rules: ReadonlyArray<Pick<FilterRule, "chain">>): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const rule of rules) counts[rule.chain] = (counts[rule.chain] ?? 0) + 1
  return counts
}

const mentions = (rule: FilterRule, address: string): boolean => rule.rule.split(/\s+/).includes(address)

/** What is wrong with the owner's rules as listed, compared with the handle; [] when nothing. */
const problems = (listed: ReadonlyArray<FilterRule>, handle: Pick<PodRulesHandle, "comment" | "chains" | "addresses">): Array<string> => {
  const mine = listed.filter((rule) => rule.comment === handle.comment)
  const counts = perChain(mine)
  const wrong: Array<string> = []
  for (const chain of new Set([...Object.keys(counts), ...Object.keys(handle.chains)])) {
    const found = counts[chain] ?? 0
    const expected = handle.chains[chain] ?? 0
    if (found !== expected) wrong.push(`chain ${chain} holds ${found} rule(s) of ${handle.comment}, expected ${expected}`)
  }
  for (const address of handle.addresses) {
    if (!mine.some((rule) => mentions(rule, address))) wrong.push(`no rule of ${handle.comment} mentions ${address}`)
  }
  return wrong
}

/**
 * Installs a pod's firewall rules in one transaction. As the reference's AppendUnique makes
 * its ADD idempotent, a repeated ADD whose rules are all there already adopts them; rules
 * of the same owner that differ (a stale earlier ADD) are replaced. Undo removes every rule
 * of the owner, and the backend drops the chains and table that leaves empty.
 */
export const podRules = makeStep<PodRulesInput, PodRulesHandle, BackendError, Backend>({
  name: STEP,
  handle: PodRulesHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const base = { netns: input.netns, table: input.table, comment: input.comment, chains: perChain(input.rules), addresses: [...input.addresses] }
      const listed = yield* backend.listFilterRules(input.netns, input.table)
      const existing = listed.filter((rule) => rule.comment === input.comment)
      if (existing.length > 0 && problems(listed, base).length === 0) return { ...base, adopted: true }
      if (existing.length > 0) yield* backend.deleteFilterRules(input.netns, input.table, input.comment)
      if (input.rules.length > 0) {
        // if the new rules cannot go in, the owner's previous rules come back (chains as ADD declares them)
        const chainSpec = new Map(input.rules.map((rule) => [`${rule.family} ${rule.chain}`, rule.baseChain]))
        const previous = existing.map(({ baseChain: _listed, ...rule }) => {
          const spec = chainSpec.get(`${rule.family} ${rule.chain}`)
          return spec === undefined ? rule : { ...rule, baseChain: spec }
        })
        yield* backend.addFilterRules(input.netns, input.rules).pipe(
          Effect.onError(() => previous.length > 0 ? Effect.ignore(backend.addFilterRules(input.netns, previous)) : Effect.void)
        )
      }
      return { ...base, adopted: false }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      if (handle.adopted) return
      yield* (yield* Backend).deleteFilterRules(handle.netns, handle.table, handle.comment)
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const wrong = problems(yield* (yield* Backend).listFilterRules(handle.netns, handle.table), handle)
      yield* ensure(STEP, wrong.length === 0, () => `table ${handle.table}: ${wrong.join("; ")}`)
    })
})
