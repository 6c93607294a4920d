import { Duration, Effect, Schema } from "effect"
import {
  Backend,
  BackendError,
  type BackendShape,
  isNotFound,
  NftElementKey,
  NftTable,
  type NftTableRef
} from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { LOCK_DIR, withFileLock } from "@tscni/lock"
import { ignoreAbsent } from "./internal.ts"

/**
 * Per-pod packet-filter state as elements of a keyed nftables table (@tscni/backend
 * nftSets.ts): a pod's masquerade source, its hostPort map entries, its firewall set
 * entries. The table's skeleton is created by the first pod that needs it; every element
 * carries the pod's owner comment. ADD, DEL and CHECK touch the pod's own elements by key,
 * so their cost does not depend on how many pods or foreign rules the node has.
 *
 * Tables are named `tscni-<kind>-<network hash>-<skeleton hash>`: a network whose settings
 * change (another ingress policy, other conditions) gets a new table for its new pods while
 * the old pods keep theirs, and all of a network's tables share a prefix for GC.
 */

const sha8 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex").slice(0, 8)

/** What all of one network's tables of one kind are named with: `tscni-<kind>-<8 hex>-`. */
export const keyedTablePrefix = (kind: string, network: string): string => `tscni-${kind}-${sha8(network)}-`

/** A keyed table for one network, named from the network and from the skeleton itself. */
export const keyedTable = (
  kind: string,
  network: string,
  skeleton: Omit<NftTable, "name">
): NftTable => ({ ...skeleton, name: `${keyedTablePrefix(kind, network)}${sha8(JSON.stringify(skeleton))}` })

/** One element a pod owns: its set, key and (for a map) value; the comment is the owner. */
export const OwnedElement = Schema.Struct({
  set: Schema.String,
  key: Schema.String,
  value: Schema.optionalKey(Schema.String)
})
export type OwnedElement = typeof OwnedElement.Type

export interface NftElementsInput {
  readonly netns: string
  readonly table: NftTable
  /** the owner comment every element carries (per attachment) */
  readonly owner: string
  readonly elements: ReadonlyArray<OwnedElement>
}

/**
 * Enough to remove exactly the pod's elements and to check them. `elements` absent: not
 * known (a DEL without prevResult): the pod's elements are found by owner in every table of
 * the network (`prefix`). `created`: this ADD made the table, so its rollback removes it
 * again when no other pod's element is in it. `adopted`: already there with this owner and
 * value (a repeated ADD): its rollback leaves them.
 */
export const NftElementsHandle = Schema.Struct({
  netns: Schema.String,
  table: NftTable,
  prefix: Schema.String,
  owner: Schema.String,
  elements: Schema.optionalKey(Schema.Array(OwnedElement)),
  created: Schema.Boolean,
  adopted: Schema.Array(NftElementKey)
})
export type NftElementsHandle = typeof NftElementsHandle.Type

const STEP = "nftElements"

/**
 * Where ADDs adding to a table and the rollback that removes a table it made take turns:
 * shared while adding, exclusive while deciding the table is unused and removing it, so an
 * element is never added to a table that is being removed.
 */
const tableLock = <A, R>(table: NftTableRef, mode: "shared" | "exclusive", effect: Effect.Effect<A, BackendError, R>) =>
  withFileLock(
    `${LOCK_DIR}/nft-${table.family}-${table.name}.lock`,
    effect,
    (failure) => new BackendError({ operation: STEP, reason: "Busy", message: `${STEP}: ${failure.message}` }),
    Duration.seconds(30),
    mode
  )

const idOf = (element: { readonly set: string; readonly key: string }): string => `${element.set} ${element.key}`

/**
 * Adds the pod's elements; a missing table is created with them (whoever loses that race
 * adds to the winner's). Keys that are there already are adopted when they carry this
 * owner and value, and refused (AlreadyExists) when they are someone else's.
 */
const addOwned = (backend: BackendShape, input: NftElementsInput) =>
  Effect.gen(function*() {
    const elements = input.elements.map((element) => ({ ...element, comment: input.owner }))
    const first = yield* Effect.result(backend.addNftElements(input.netns, input.table, elements))
    if (first._tag === "Success") return { created: false, adopted: [] }
    if (isNotFound(first.failure) && first.failure.netns !== true) {
      const created = yield* Effect.result(backend.createNftTable(input.netns, input.table, elements))
      if (created._tag === "Success") return { created: true, adopted: [] }
      if (created.failure.reason !== "AlreadyExists") return yield* Effect.fail(created.failure)
      // another pod created it in between: add to it
      const again = yield* Effect.result(backend.addNftElements(input.netns, input.table, elements))
      if (again._tag === "Success") return { created: false, adopted: [] }
      if (again.failure.reason !== "AlreadyExists") return yield* Effect.fail(again.failure)
    } else if (first.failure.reason !== "AlreadyExists") {
      return yield* Effect.fail(first.failure)
    }
    const present = yield* backend.getNftElements(input.netns, input.table, input.elements)
    const wanted = new Map(elements.map((element) => [idOf(element), element]))
    const foreign = present.find((element) => element.comment !== input.owner || element.value !== wanted.get(idOf(element))?.value)
    if (foreign !== undefined) {
      return yield* new BackendError({
        operation: STEP,
        reason: "AlreadyExists",
        message: `${STEP}: ${foreign.set} { ${foreign.key} } in table ${input.table.name} belongs to ${foreign.comment || "someone else"}${foreign.value === undefined ? "" : ` (${foreign.value})`}`
      })
    }
    const adopted = new Set(present.map(idOf))
    yield* backend.addNftElements(input.netns, input.table, elements.filter((element) => !adopted.has(idOf(element))))
    return { created: false, adopted: present.map(({ set, key }) => ({ set, key })) }
  })

/** Deletes those of `keys` in `table` that carry `owner` (a missing table holds none). */
const deleteOwned = (backend: BackendShape, netns: string, table: NftTableRef, owner: string, keys: ReadonlyArray<NftElementKey>) =>
  Effect.gen(function*() {
    if (keys.length === 0) return 0
    const present = (yield* ignoreAbsent(backend.getNftElements(netns, table, keys))) ?? []
    const mine = present.filter((element) => element.comment === owner).map(({ set, key }) => ({ set, key }))
    if (mine.length > 0) yield* ignoreAbsent(backend.deleteNftElements(netns, table, mine))
    return mine.length
  })

/**
 * Removes every element of `owner` from the network's tables (found by prefix): what DEL
 * does when it does not know the keys, and where it looks when the keys are not in the
 * table its config names (the pod was added under other settings).
 */
const deleteOwnedEverywhere = (backend: BackendShape, handle: NftElementsHandle, keys: ReadonlyArray<NftElementKey> | undefined) =>
  Effect.gen(function*() {
    const tables = (yield* ignoreAbsent(backend.listNftTables(handle.netns, handle.prefix))) ?? []
    for (const ref of tables) {
      if (ref.family !== handle.table.family) continue
      if (keys !== undefined) {
        if (ref.name !== handle.table.name) yield* deleteOwned(backend, handle.netns, ref, handle.owner, keys)
        continue
      }
      const listed = (yield* ignoreAbsent(backend.listNftElements(handle.netns, ref))) ?? []
      const mine = listed.filter((element) => element.comment === handle.owner).map(({ set, key }) => ({ set, key }))
      if (mine.length > 0) yield* ignoreAbsent(backend.deleteNftElements(handle.netns, ref, mine))
    }
  })

/**
 * Removes a table nobody has an element in any more, holding the table's lock exclusively
 * (no ADD is adding to it meanwhile). What a rollback of the ADD that created it does, and GC.
 */
export const removeTableIfUnused = (netns: string, table: NftTableRef): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    yield* tableLock(table, "exclusive", Effect.gen(function*() {
      const elements = yield* ignoreAbsent(backend.listNftElements(netns, table))
      if (elements !== undefined && elements.length === 0) yield* ignoreAbsent(backend.deleteNftTable(netns, table))
    }))
  })

/**
 * The pod's elements in one transaction (the table's skeleton with them when it is the
 * first pod). Undo removes exactly the owner's elements, by key, never another pod's that
 * holds the same key; CHECK looks each up.
 */
export const nftElements = makeStep<NftElementsInput, NftElementsHandle, BackendError, Backend>({
  name: STEP,
  handle: NftElementsHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const { created, adopted } = yield* tableLock(input.table, "shared", addOwned(backend, input))
      return {
        netns: input.netns,
        table: input.table,
        prefix: input.table.name.slice(0, input.table.name.lastIndexOf("-") + 1),
        owner: input.owner,
        elements: input.elements,
        created,
        adopted
      }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const adopted = new Set(handle.adopted.map(idOf))
      const keys = handle.elements?.map(({ set, key }) => ({ set, key })).filter((key) => !adopted.has(idOf(key)))
      if (keys === undefined) {
        yield* deleteOwnedEverywhere(backend, handle, undefined)
      } else {
        const deleted = yield* deleteOwned(backend, handle.netns, handle.table, handle.owner, keys)
        // not all of them here: a DEL repeated, or a pod added under other settings
        if (deleted < keys.length && !handle.created) yield* deleteOwnedEverywhere(backend, handle, keys)
      }
      if (handle.created) yield* removeTableIfUnused(handle.netns, handle.table)
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const tables = yield* backend.listNftTables(handle.netns, handle.table.name)
      yield* ensure(STEP, tables.some((t) => t.family === handle.table.family && t.name === handle.table.name), () =>
        `table ${handle.table.family} ${handle.table.name} is missing`)
      for (const chain of handle.table.chains) {
        const rules = yield* backend.listNftChainRules(handle.netns, handle.table, chain.name)
        yield* ensure(STEP, rules.length === chain.rules.length, () =>
          `chain ${chain.name} of table ${handle.table.name} holds ${rules.length} rule(s), expected ${chain.rules.length}`)
      }
      const expected = handle.elements ?? []
      const present = new Map((yield* backend.getNftElements(handle.netns, handle.table, expected)).map((element) => [idOf(element), element]))
      for (const element of expected) {
        const found = present.get(idOf(element))
        yield* ensure(STEP, found !== undefined, () => `table ${handle.table.name} has no ${element.set} { ${element.key} }`)
        yield* ensure(STEP, found?.comment === handle.owner, () =>
          `${element.set} { ${element.key} } in table ${handle.table.name} belongs to ${found?.comment}, not ${handle.owner}`)
        yield* ensure(STEP, found?.value === element.value, () =>
          `${element.set} { ${element.key} } in table ${handle.table.name} maps to ${found?.value}, expected ${element.value}`)
      }
    })
})

/**
 * The handle DEL undoes for a pod: its elements by key when known, or found by owner in
 * the network's tables when not (no prevResult).
 */
export const nftElementsHandle = (
  netns: string,
  table: NftTable,
  owner: string,
  elements: ReadonlyArray<OwnedElement> | undefined
): NftElementsHandle => ({
  netns,
  table,
  prefix: table.name.slice(0, table.name.lastIndexOf("-") + 1),
  owner,
  ...(elements === undefined ? {} : { elements }),
  created: false,
  adopted: []
})
