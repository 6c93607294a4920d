import { expect, test } from "bun:test"
import { memoryGuard } from "../src/daemon.ts"

test("a call finished above the soft limit asks for a collection; at or under it, or with the limit off, none", () => {
  let rss = 0
  let collections = 0
  const guard = memoryGuard(100, () => rss, () => collections++)
  for (const [now, asks] of [[50, false], [100, false], [101, true], [150, true], [99, false]] as const) {
    rss = now
    expect(guard.afterCall()).toBe(asks)
  }
  expect(collections).toBe(2)
  const off = memoryGuard(0, () => 1e12, () => collections++)
  expect(off.afterCall()).toBe(false)
  expect(collections).toBe(2)
})

test("the default reads this process's RSS: a limit of 1 byte is always exceeded", () => {
  let collections = 0
  expect(memoryGuard(1, undefined, () => collections++).afterCall()).toBe(true)
  expect(collections).toBe(1)
})
