import {
  type BackendError,
  type NetnsPath,
  type NftChanges,
  type NftChain,
  type NftElement,
  type NftElementKey,
  nftElementProblem,
  nftKeyTextProblem,
  type NftSet,
  type NftTable,
  type NftTableRef,
  nftTableProblem,
  nftTableRefProblem
} from "@tscni/backend"
import { Effect } from "effect"
import { fail, type KernelState, type NetnsState, requireNetns } from "./state.ts"

/** One keyed table of the model: its skeleton as created, and each set's elements by key. */
export interface NftTableState {
  readonly family: NftTable["family"]
  readonly name: string
  readonly chains: ReadonlyArray<NftChain>
  readonly sets: Map<string, { readonly spec: NftSet; readonly elements: Map<string, { readonly value?: string; readonly comment: string }> }>
}

const tableKey = (table: NftTableRef): string => `${table.family} ${table.name}`

/** A skeleton as the model holds it, with no elements yet. */
const emptyTable = (table: NftTable): NftTableState => ({
  family: table.family,
  name: table.name,
  chains: table.chains.map((chain) => ({ ...chain, rules: [...chain.rules] })),
  sets: new Map(table.sets.map((spec) => [spec.name, { spec: { ...spec }, elements: new Map() }]))
})

/** Every element of a table, set by set in creation order, keys in insertion order. */
const elementsOf = (table: NftTableState): Array<NftElement> =>
  [...table.sets.values()].flatMap(({ spec, elements }) =>
    [...elements].map(([key, { value, comment }]) => ({ set: spec.name, key, ...(value !== undefined ? { value } : {}), comment }))
  )

/** Keyed tables of a namespace for snapshots: skeleton and elements, in a stable order. */
export const nftTablesOf = (ns: NetnsState) =>
  [...ns.nftTables.values()]
    .sort((a, b) => tableKey(a).localeCompare(tableKey(b)))
    .map((table) => ({
      family: table.family,
      name: table.name,
      sets: [...table.sets.values()].map(({ spec }) => ({ ...spec })),
      chains: table.chains.map((chain) => ({ ...chain, rules: [...chain.rules] })),
      elements: elementsOf(table).sort((a, b) => `${a.set} ${a.key}`.localeCompare(`${b.set} ${b.key}`))
    }))

/**
 * The model's keyed nftables. Like nft, it refuses a skeleton or an element that does not
 * fit (Invalid) before looking at the kernel state; a missing table or set is NotFound, a
 * key that is there already AlreadyExists; every call is all or nothing.
 */
export const nftSetOperations = (state: KernelState) => {
  const invalid = (operation: string, problem: string) => fail(operation, "Invalid", `${operation}: ${problem}`, "EINVAL")
  const missing = (operation: string, what: string) => fail(operation, "NotFound", `${operation}: ${what}: No such file or directory`, "ENOENT")

  /** Checks the elements against the caller's skeleton, as the Linux backend does before sending anything. */
  const checkAgainst = (operation: string, table: NftTable, elements: ReadonlyArray<NftElementKey & { readonly value?: string; readonly comment?: string }>) =>
    Effect.gen(function*() {
      const problem = nftTableProblem(table)
      if (problem !== undefined) return yield* invalid(operation, problem)
      for (const element of elements) {
        const set = table.sets.find((s) => s.name === element.set)
        if (set === undefined) return yield* missing(operation, `table ${tableKey(table)} has no set ${element.set}`)
        const bad = nftElementProblem(set, element)
        if (bad !== undefined) return yield* invalid(operation, bad)
      }
    })

  /** Refuses keys that could break out of an element list, as the Linux backend does. */
  const checkKeys = (operation: string, table: NftTableRef, keys: ReadonlyArray<NftElementKey>) =>
    Effect.gen(function*() {
      const problem = nftTableRefProblem(table) ?? keys.map(nftKeyTextProblem).find((p) => p !== undefined)
      if (problem !== undefined) return yield* invalid(operation, problem)
    })

  /** The table in the kernel and the sets the elements name; NotFound when one is missing. */
  const existing = (operation: string, ns: NetnsState, table: NftTableRef, sets: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const found = ns.nftTables.get(tableKey(table))
      if (found === undefined) return yield* missing(operation, `table ${tableKey(table)}`)
      const absent = sets.find((set) => !found.sets.has(set))
      if (absent !== undefined) return yield* missing(operation, `set ${absent} of ${tableKey(table)}`)
      return found
    })

  /** A key that is not of its set's type is Invalid, as the kernel's set types make it on Linux. */
  const checkKeyTypes = (operation: string, table: NftTableState, keys: ReadonlyArray<NftElementKey>) =>
    Effect.gen(function*() {
      for (const key of keys) {
        const bad = nftElementProblem(table.sets.get(key.set)?.spec, { set: key.set, key: key.key })
        if (bad !== undefined) return yield* invalid(operation, bad)
      }
    })

  /** Adds elements to a table the caller may discard on failure (all or nothing). */
  const insert = (operation: string, table: NftTableState, elements: ReadonlyArray<NftElement>) =>
    Effect.gen(function*() {
      const seen = new Set<string>()
      for (const element of elements) {
        const id = `${element.set} ${element.key}`
        if (seen.has(id) || table.sets.get(element.set)?.elements.has(element.key) === true) {
          return yield* fail(operation, "AlreadyExists", `${operation}: ${element.set} { ${element.key} }: File exists`, "EEXIST")
        }
        seen.add(id)
      }
      for (const element of elements) {
        table.sets.get(element.set)?.elements.set(element.key, { ...(element.value !== undefined ? { value: element.value } : {}), comment: element.comment })
      }
    })

  return {
    createNftTable: (netns: NetnsPath, table: NftTable, elements: ReadonlyArray<NftElement>): Effect.Effect<void, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "createNftTable", netns)
        yield* checkAgainst("createNftTable", table, elements)
        if (ns.nftTables.has(tableKey(table))) {
          return yield* fail("createNftTable", "AlreadyExists", `createNftTable: table ${tableKey(table)}: File exists`, "EEXIST")
        }
        const created = emptyTable(table)
        yield* insert("createNftTable", created, elements)
        ns.nftTables.set(tableKey(table), created)
      }),

    addNftElements: (netns: NetnsPath, table: NftTable, elements: ReadonlyArray<NftElement>): Effect.Effect<void, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "addNftElements", netns)
        yield* checkAgainst("addNftElements", table, elements)
        if (elements.length === 0) return
        yield* insert("addNftElements", yield* existing("addNftElements", ns, table, elements.map((e) => e.set)), elements)
      }),

    getNftElements: (netns: NetnsPath, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): Effect.Effect<ReadonlyArray<NftElement>, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "getNftElements", netns)
        yield* checkKeys("getNftElements", table, keys)
        const found = yield* existing("getNftElements", ns, table, keys.map((k) => k.set))
        yield* checkKeyTypes("getNftElements", found, keys)
        return keys.flatMap((key) => {
          const element = found.sets.get(key.set)?.elements.get(key.key)
          return element === undefined ? [] : [{ set: key.set, key: key.key, ...element }]
        })
      }),

    deleteNftElements: (netns: NetnsPath, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): Effect.Effect<void, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "deleteNftElements", netns)
        yield* checkKeys("deleteNftElements", table, keys)
        if (keys.length === 0) return
        const found = yield* existing("deleteNftElements", ns, table, keys.map((k) => k.set))
        yield* checkKeyTypes("deleteNftElements", found, keys)
        const absent = keys.find((key) => found.sets.get(key.set)?.elements.has(key.key) !== true)
        if (absent !== undefined) return yield* missing("deleteNftElements", `${absent.set} { ${absent.key} }`)
        for (const key of keys) found.sets.get(key.set)?.elements.delete(key.key)
      }),

    listNftElements: (netns: NetnsPath, table: NftTableRef): Effect.Effect<ReadonlyArray<NftElement>, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "listNftElements", netns)
        const problem = nftTableRefProblem(table)
        if (problem !== undefined) return yield* invalid("listNftElements", problem)
        return elementsOf(yield* existing("listNftElements", ns, table, []))
      }),

    listNftChainRules: (netns: NetnsPath, table: NftTableRef, chain: string): Effect.Effect<ReadonlyArray<string>, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "listNftChainRules", netns)
        const problem = nftTableRefProblem(table)
        if (problem !== undefined) return yield* invalid("listNftChainRules", problem)
        const found = (yield* existing("listNftChainRules", ns, table, [])).chains.find((c) => c.name === chain)
        if (found === undefined) return yield* missing("listNftChainRules", `chain ${chain} of ${tableKey(table)}`)
        return [...found.rules]
      }),

    // every table, the keyed ones and those rules of the older layout live in
    listNftTables: (netns: NetnsPath, prefix: string): Effect.Effect<ReadonlyArray<NftTableRef>, BackendError> =>
      Effect.map(requireNetns(state, "listNftTables", netns), (ns) => {
        const tables = new Map<string, NftTableRef>()
        for (const table of ns.nftTables.values()) tables.set(tableKey(table), { family: table.family, name: table.name })
        for (const rule of ns.filterRules) tables.set(`${rule.family} ${rule.table}`, { family: rule.family, name: rule.table })
        return [...tables.values()].filter((table) => table.name.startsWith(prefix))
      }),

    replaceNftTable: (netns: NetnsPath, table: NftTable, elements: ReadonlyArray<NftElement>): Effect.Effect<void, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "replaceNftTable", netns)
        yield* checkAgainst("replaceNftTable", table, elements)
        const made = emptyTable(table)
        yield* insert("replaceNftTable", made, elements)
        ns.nftTables.set(tableKey(table), made)
      }),

    changeNftTable: (netns: NetnsPath, table: NftTableRef, changes: NftChanges): Effect.Effect<void, BackendError> =>
      Effect.gen(function*() {
        const operation = "changeNftTable"
        const ns = yield* requireNetns(state, operation, netns)
        const skeleton: NftTable = { family: table.family, name: table.name, sets: [...changes.addSets, ...changes.sets], chains: changes.addChains }
        yield* checkAgainst(operation, skeleton, changes.addElements)
        yield* checkKeys(operation, table, changes.deleteElements)
        const found = yield* existing(operation, ns, table, [])
        // worked on a copy: any refusal leaves the table as it was
        const sets = new Map([...found.sets].map(([name, set]) => [name, { spec: set.spec, elements: new Map(set.elements) }]))
        const chains = new Map(found.chains.map((chain) => [chain.name, chain]))
        const exists = (what: string) => fail(operation, "AlreadyExists", `${operation}: ${what}: File exists`, "EEXIST")
        for (const spec of changes.addSets) {
          if (sets.has(spec.name)) return yield* exists(`set ${spec.name}`)
          sets.set(spec.name, { spec: { ...spec }, elements: new Map() })
        }
        for (const chain of changes.addChains) {
          if (chains.has(chain.name)) return yield* exists(`chain ${chain.name}`)
          chains.set(chain.name, { ...chain, rules: [...chain.rules] })
        }
        for (const key of changes.deleteElements) {
          if (sets.get(key.set)?.elements.delete(key.key) !== true) return yield* missing(operation, `${key.set} { ${key.key} }`)
        }
        for (const element of changes.addElements) {
          const set = sets.get(element.set)
          if (set === undefined) return yield* missing(operation, `set ${element.set} of ${tableKey(table)}`)
          if (set.elements.has(element.key)) return yield* exists(`${element.set} { ${element.key} }`)
          set.elements.set(element.key, { ...(element.value !== undefined ? { value: element.value } : {}), comment: element.comment })
        }
        for (const name of changes.deleteChains) {
          if (!chains.delete(name)) return yield* missing(operation, `chain ${name} of ${tableKey(table)}`)
        }
        for (const name of changes.deleteSets) {
          if (!sets.delete(name)) return yield* missing(operation, `set ${name} of ${tableKey(table)}`)
        }
        // as the kernel: what a rule or a map element still refers to cannot go (EBUSY)
        const rules = [...chains.values()].flatMap((chain) => chain.rules)
        const verdicts = [...sets.values()].flatMap((set) => [...set.elements.values()].flatMap((e) => (e.value === undefined ? [] : [e.value])))
        const busy = (what: string) => fail(operation, "Busy", `${operation}: ${what}: Device or resource busy`, "EBUSY")
        // names are [A-Za-z0-9_-] (nftTableProblem): safe in a pattern as they are
        for (const name of changes.deleteChains) {
          const jump = new RegExp(`(^|\\s)(jump|goto) ${name}(\\s|$)`)
          if ([...rules, ...verdicts].some((text) => jump.test(text))) return yield* busy(`chain ${name}`)
        }
        for (const name of changes.deleteSets) {
          const lookup = new RegExp(`@${name}(\\s|$)`)
          if (rules.some((rule) => lookup.test(rule))) return yield* busy(`set ${name}`)
        }
        ns.nftTables.set(tableKey(table), { family: found.family, name: found.name, chains: [...chains.values()], sets })
      }),

    deleteNftTable: (netns: NetnsPath, table: NftTableRef): Effect.Effect<void, BackendError> =>
      Effect.gen(function*() {
        const ns = yield* requireNetns(state, "deleteNftTable", netns)
        const problem = nftTableRefProblem(table)
        if (problem !== undefined) return yield* invalid("deleteNftTable", problem)
        yield* existing("deleteNftTable", ns, table, [])
        ns.nftTables.delete(tableKey(table))
      })
  }
}
