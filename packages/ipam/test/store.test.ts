import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Deferred, Effect, Fiber } from "effect"
import { formatIp, type Ip, parseIp } from "@tscni/ip"
import { diskFiles, makeNetworkStore, memoryStore, type NetworkStore, ownedBy, StoreError } from "../src/index.ts"
import { withFileLock } from "@tscni/steps"
import { TEMP_DIR } from "../src/hostLocal/diskStore.ts"

const ip = (text: string): Ip => parseIp(text)!
const owner = { containerId: "c1", ifname: "eth0" }
const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

const tempRoot = mkdtempSync(join(tmpdir(), "tscni-ipam-store-"))
afterAll(() => rmSync(tempRoot, { recursive: true, force: true }))
let dirCounter = 0

/** The same cases on both implementations: the fake must behave like the disk. */
const implementations: Array<{ label: string; make: () => { store: NetworkStore; names: () => Array<string> } }> = [
  {
    label: "memory fake",
    make: () => {
      const fake = memoryStore()
      return { store: fake.network("/data", "net"), names: () => [...fake.files("/data", "net").keys()].sort() }
    }
  },
  {
    label: "disk",
    make: () => {
      const dataDir = join(tempRoot, `d${dirCounter++}`)
      const store = makeNetworkStore(diskFiles(dataDir, "net"))
      return {
        store,
        names: () => {
          try {
            return readdirSync(join(dataDir, "net")).sort()
          } catch {
            return []
          }
        }
      }
    }
  }
]

for (const { label, make } of implementations) {
  describe(`store on ${label}`, () => {
    test("a store that was never written does not exist and lists nothing", async () => {
      const { store, names } = make()
      expect(await run(store.exists)).toBe(false)
      expect(await run(store.allocations)).toEqual([])
      expect(await run(store.lastReserved(0))).toBeUndefined()
      expect(names()).toEqual([])
    })

    test("reserve writes one file per address and the last reserved address per set", async () => {
      const { store, names } = make()
      const conflict = await run(store.locked(store.reserve(owner, [{ ip: ip("10.0.0.2"), setIndex: 0 }, {
        ip: ip("fd00::2"),
        setIndex: 1
      }])))
      expect(conflict).toBeUndefined()
      expect(names().filter((name) => !name.startsWith("."))).toEqual(
        label === "disk"
          ? ["10.0.0.2", "fd00::2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]
          : ["10.0.0.2", "fd00::2", "last_reserved_ip.0", "last_reserved_ip.1"]
      )
      const allocations = await run(store.allocations)
      expect(allocations.map((a) => [formatIp(a.ip), a.containerId, a.ifname]).sort()).toEqual([
        ["10.0.0.2", "c1", "eth0"],
        ["fd00::2", "c1", "eth0"]
      ])
      expect(formatIp((await run(store.lastReserved(1)))!)).toBe("fd00::2")
    })

    test("reserve is all or nothing: an address already taken undoes the others", async () => {
      const { store } = make()
      await run(store.locked(store.reserve({ containerId: "other", ifname: "eth0" }, [{ ip: ip("10.0.0.3"), setIndex: 0 }])))
      const conflict = await run(store.locked(store.reserve(owner, [{ ip: ip("fd00::3"), setIndex: 1 }, {
        ip: ip("10.0.0.3"),
        setIndex: 0
      }])))
      expect(formatIp(conflict!)).toBe("10.0.0.3")
      const left = await run(store.allocations)
      expect(left.map((a) => [formatIp(a.ip), a.containerId])).toEqual([["10.0.0.3", "other"]])
      // the failed call recorded no last reserved address
      expect(await run(store.lastReserved(1))).toBeUndefined()
    })

    test("release removes exactly the given addresses; releasing twice is fine", async () => {
      const { store } = make()
      await run(store.locked(store.reserve(owner, [{ ip: ip("10.0.0.2"), setIndex: 0 }])))
      await run(store.locked(store.reserve({ containerId: "c2", ifname: "eth0" }, [{ ip: ip("10.0.0.3"), setIndex: 0 }])))
      await run(store.locked(store.release([ip("10.0.0.2")])))
      await run(store.locked(store.release([ip("10.0.0.2")])))
      expect((await run(store.allocations)).map((a) => a.containerId)).toEqual(["c2"])
    })

    test("boot id and last-reserved files can be set and forgotten", async () => {
      const { store } = make()
      expect(await run(store.bootId)).toBeUndefined()
      await run(store.locked(store.setBootId("b-1")))
      expect(await run(store.bootId)).toBe("b-1")
      await run(store.locked(store.reserve(owner, [{ ip: ip("10.0.0.2"), setIndex: 0 }])))
      await run(store.locked(store.forgetLastReserved))
      expect(await run(store.lastReserved(0))).toBeUndefined()
      expect((await run(store.allocations)).length).toBe(1)
    })
  })
}

describe("temp files of writers killed between write and rename", () => {
  test("are removed under the lock when their process is gone; this process's and other files stay", async () => {
    const dataDir = join(tempRoot, "tempfiles")
    const store = makeNetworkStore(diskFiles(dataDir, "net"))
    await run(store.locked(store.setBootId("b")))
    // a pid that was alive and is gone: a child we started and reaped
    const gone = Bun.spawnSync(["true"]).pid
    // the temp dir exists once something was replaced
    expect(readdirSync(join(dataDir, "net", TEMP_DIR))).toEqual([])
    const stale = join(dataDir, "net", TEMP_DIR, `.last_reserved_ip.0.${gone}.0.tmp`)
    const ours = join(dataDir, "net", TEMP_DIR, `.last_reserved_ip.0.${process.pid}.7.tmp`)
    const other = join(dataDir, "net", TEMP_DIR, ".something-else.tmp")
    for (const path of [stale, ours, other]) writeFileSync(path, "10.0.0.9")
    await run(store.locked(store.allocations))
    expect([existsSync(stale), existsSync(ours), existsSync(other)]).toEqual([false, true, true])
  })
})

describe("the on-disk format is the reference's", () => {
  test("an allocation file holds `<containerID>\\r\\n<ifname>`; last_reserved_ip.N holds the address", async () => {
    const dataDir = join(tempRoot, "format")
    const store = makeNetworkStore(diskFiles(dataDir, "net"))
    await run(store.locked(store.reserve({ containerId: " c9 ", ifname: "net1" }, [{ ip: ip("fd00::a"), setIndex: 2 }])))
    expect(readFileSync(join(dataDir, "net", "fd00::a"), "utf8")).toBe("c9\r\nnet1")
    expect(readFileSync(join(dataDir, "net", "last_reserved_ip.2"), "utf8")).toBe("fd00::a")
  })

  test("files written by the reference are read back, old ID-only files included", async () => {
    const dataDir = join(tempRoot, "legacy")
    const store = makeNetworkStore(diskFiles(dataDir, "net"))
    await run(store.locked(store.setBootId("b")))
    writeFileSync(join(dataDir, "net", "10.0.0.7"), "old-container")
    writeFileSync(join(dataDir, "net", "10.0.0.8"), "c1\r\neth0")
    writeFileSync(join(dataDir, "net", "10.0.0.9"), "c1\neth1\n")
    writeFileSync(join(dataDir, "net", "not-an-ip"), "c1\r\neth0")
    const all = await run(store.allocations)
    expect(all.map((a) => [formatIp(a.ip), a.containerId, a.ifname]).sort()).toEqual([
      ["10.0.0.7", "old-container", undefined],
      ["10.0.0.8", "c1", "eth0"],
      ["10.0.0.9", "c1", "eth1"]
    ])
    // exact owner matches win; ID-only files match only when there is no exact one
    expect(ownedBy(all, { containerId: "c1", ifname: "eth0" }).map((a) => formatIp(a.ip))).toEqual(["10.0.0.8"])
    expect(ownedBy(all, { containerId: "old-container", ifname: "eth0" }).map((a) => formatIp(a.ip))).toEqual(["10.0.0.7"])
  })
})

describe("the flock", () => {
  test("excludes a second holder until the first lets go, then lets it in", async () => {
    const path = join(tempRoot, "excl.lock")
    const order: Array<string> = []
    await run(Effect.gen(function*() {
      const holding = yield* Deferred.make<void>()
      const letGo = yield* Deferred.make<void>()
      const first = yield* Effect.forkChild(withFileLock(path, Effect.gen(function*() {
        order.push("first in")
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(letGo)
        order.push("first out")
      }), (failure) => failure))
      yield* Deferred.await(holding)
      const second = yield* Effect.forkChild(withFileLock(path, Effect.sync(() => void order.push("second in")), (f) => f))
      yield* Effect.sleep("50 millis")
      order.push("released")
      yield* Deferred.succeed(letGo, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
    }))
    expect(order).toEqual(["first in", "released", "first out", "second in"])
  })

  test("a holder past the timeout makes the waiter fail as busy; a failing body still unlocks", async () => {
    const path = join(tempRoot, "busy.lock")
    const outcome = await run(Effect.gen(function*() {
      const holding = yield* Deferred.make<void>()
      const holder = yield* Effect.forkChild(
        withFileLock(path, Deferred.succeed(holding, undefined).pipe(Effect.andThen(Effect.never)), (f) => f)
      )
      yield* Deferred.await(holding)
      const waited = yield* Effect.flip(withFileLock(path, Effect.void, (f) => f, "100 millis"))
      yield* Fiber.interrupt(holder)
      const failed = yield* Effect.flip(withFileLock(path, Effect.fail("boom"), (f) => f))
      const after = yield* withFileLock(path, Effect.succeed("free again"), (f) => f, "1 second")
      return { waited, failed, after }
    }))
    expect(typeof outcome.waited === "object" && outcome.waited.busy).toBe(true)
    expect(outcome.failed).toBe("boom")
    expect(outcome.after).toBe("free again")
  })

  test("disk store lock failures become StoreError", async () => {
    const files = diskFiles("/proc/tscni-cannot-create", "net")
    const error = await run(Effect.flip(files.locked(Effect.void)))
    expect(error).toBeInstanceOf(StoreError)
  })
})
