import { expect, test } from "bun:test"
import { memoryGuard, MIN_COLLECTION_INTERVAL_MS } from "../src/daemon.ts"

test("a call finished above the soft limit asks for a collection, at most once per interval; at or under it, or with the limit off, none", () => {
  let rss = 0
  let now = 0
  let collections = 0
  const guard = memoryGuard(100, { rss: () => rss, now: () => now, collect: () => collections++ })
  const steps: ReadonlyArray<readonly [rss: number, advanceMs: number, asks: boolean]> = [
    [50, 0, false],
    [100, 0, false],
    [101, 0, true],
    // above the limit again at once: not before the interval has passed
    [150, 1, false],
    [150, MIN_COLLECTION_INTERVAL_MS - 2, false],
    [150, 1, true],
    [99, MIN_COLLECTION_INTERVAL_MS, false],
    [120, 0, true]
  ]
  for (const [next, advanceMs, asks] of steps) {
    rss = next
    now += advanceMs
    expect({ rss, now, asked: guard.afterCall() }).toEqual({ rss, now, asked: asks })
  }
  expect(collections).toBe(3)
  const off = memoryGuard(0, { rss: () => 1e12, now: () => 0, collect: () => collections++ })
  expect(off.afterCall()).toBe(false)
  expect(collections).toBe(3)
})

test("the default reads this process's RSS: a limit of 1 byte is always exceeded", () => {
  expect(memoryGuard(1).afterCall()).toBe(true)
})
