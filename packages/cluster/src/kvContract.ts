/**
 * What every Kv must do, as bun:test cases: run on the in-memory fake
 * (packages/cluster/test/kv.test.ts) and on a real etcd the test starts
 * (tests/integration/etcd-kv.test.ts), so the fake the lease tests use behaves as etcd does.
 * `expire` ends a lease as its TTL would (the fake: at once; etcd: by waiting out a short
 * TTL with no keep-alive, which is not a guess at timing: etcd decides, the test waits
 * until etcdctl-independent listing shows the key gone).
 */
import { expect, test } from "bun:test"
import { Deferred, Effect, Fiber, Scope } from "effect"
import type { KvEvent, KvShape } from "./kv.ts"

export interface KvUnderTest {
  readonly kv: KvShape
  /** a fresh key prefix for one test */
  readonly prefix: () => string
  /** a lease that will expire: granted, and the way to make it expire */
  readonly expiringLease: () => Effect.Effect<{ readonly id: string; readonly expire: Effect.Effect<void> }, unknown, Scope.Scope>
}

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<A> => Effect.runPromise(Effect.scoped(effect))

export const kvContract = (subject: () => KvUnderTest): void => {
  test("createIfAbsent creates once: the second create of a key fails and changes nothing", async () => {
    const { kv, prefix } = subject()
    const key = `${prefix()}a`
    expect(await run(kv.createIfAbsent(key, "one"))).toBe(true)
    expect(await run(kv.createIfAbsent(key, "two"))).toBe(false)
    const { entries } = await run(kv.list(key))
    expect(entries.map((e) => [e.key, e.value, e.lease])).toEqual([[key, "one", undefined]])
  })

  test("replaceIf and deleteIf act only at the revision read: a stale revision changes nothing", async () => {
    const { kv, prefix } = subject()
    const key = `${prefix()}b`
    await run(kv.createIfAbsent(key, "one"))
    const [first] = (await run(kv.list(key))).entries
    expect(await run(kv.replaceIf(key, first!.modRevision, "two"))).toBe(true)
    expect(await run(kv.replaceIf(key, first!.modRevision, "three"))).toBe(false)
    expect(await run(kv.deleteIf(key, first!.modRevision))).toBe(false)
    const [second] = (await run(kv.list(key))).entries
    expect(second!.value).toBe("two")
    expect(second!.modRevision > first!.modRevision).toBe(true)
    expect(await run(kv.deleteIf(key, second!.modRevision))).toBe(true)
    expect((await run(kv.list(key))).entries).toEqual([])
    expect(await run(kv.replaceIf(key, second!.modRevision, "four"))).toBe(false)
    expect((await run(kv.list(key))).entries).toEqual([])
  })

  test("list returns only the prefix, sorted by key, and a revision at least that of every entry", async () => {
    const { kv, prefix } = subject()
    const p = prefix()
    for (const name of ["c", "a", "b"]) await run(kv.createIfAbsent(`${p}x/${name}`, name))
    await run(kv.createIfAbsent(`${p}y`, "other"))
    const { entries, revision } = await run(kv.list(`${p}x/`))
    expect(entries.map((e) => e.value)).toEqual(["a", "b", "c"])
    expect(entries.every((e) => e.modRevision <= revision)).toBe(true)
  })

  test("a key bound to a lease carries the lease, and goes when the lease expires; a key bound to none stays", async () => {
    const { kv, prefix, expiringLease } = subject()
    const p = prefix()
    await run(Effect.gen(function*() {
      const lease = yield* expiringLease()
      expect(yield* kv.createIfAbsent(`${p}leased`, "x", lease.id)).toBe(true)
      expect(yield* kv.createIfAbsent(`${p}kept`, "y")).toBe(true)
      const before = yield* kv.list(p)
      expect(before.entries.map((e) => [e.key.slice(p.length), e.lease])).toEqual([["kept", undefined], ["leased", lease.id]])
      yield* lease.expire
      const after = yield* kv.list(p)
      expect(after.entries.map((e) => e.key.slice(p.length))).toEqual(["kept"])
    }))
  })

  test("replaceIf moves a key to another lease: the old lease's expiry no longer removes it", async () => {
    const { kv, prefix, expiringLease } = subject()
    const key = `${prefix()}moved`
    await run(Effect.gen(function*() {
      const old = yield* expiringLease()
      // kept alive: it must outlive the old one
      const next = yield* kv.lease(30)
      yield* kv.createIfAbsent(key, "x", old.id)
      const [entry] = (yield* kv.list(key)).entries
      expect(yield* kv.replaceIf(key, entry!.modRevision, "x", next.id)).toBe(true)
      yield* old.expire
      const [still] = (yield* kv.list(key)).entries
      expect([still?.value, still?.lease]).toEqual(["x", next.id])
    }))
  })

  test("a watch from a revision delivers every later change under the prefix, in order, and nothing else", async () => {
    const { kv, prefix } = subject()
    const p = prefix()
    await run(Effect.gen(function*() {
      yield* kv.createIfAbsent(`${p}w/before`, "0")
      const { revision } = yield* kv.list(`${p}w/`)
      const seen: Array<string> = []
      const enough = yield* Deferred.make<void>()
      const describe = (event: KvEvent) => (event.type === "put" ? `put ${event.entry.key.slice(p.length)}=${event.entry.value}` : `delete ${event.key.slice(p.length)}`)
      // changes made before the watch starts, after the revision, are delivered too
      yield* kv.createIfAbsent(`${p}w/one`, "1")
      const fiber = yield* Effect.forkChild(kv.watch(`${p}w/`, revision, (events) =>
        Effect.gen(function*() {
          seen.push(...events.map(describe))
          if (seen.length >= 4) yield* Deferred.succeed(enough, undefined)
        })))
      yield* kv.createIfAbsent(`${p}elsewhere`, "no")
      const [one] = (yield* kv.list(`${p}w/one`)).entries
      yield* kv.replaceIf(`${p}w/one`, one!.modRevision, "2")
      const [two] = (yield* kv.list(`${p}w/one`)).entries
      yield* kv.deleteIf(`${p}w/one`, two!.modRevision)
      yield* kv.createIfAbsent(`${p}w/three`, "3")
      yield* Deferred.await(enough)
      yield* Fiber.interrupt(fiber)
      expect(seen).toEqual(["put w/one=1", "put w/one=2", "delete w/one", "put w/three=3"])
    }))
  })
}
