import { describe } from "bun:test"
import { Effect } from "effect"
import { kvContract } from "../src/kvContract.ts"
import { makeMemoryKv } from "../src/memoryKv.ts"

describe("the Kv contract on the in-memory fake", () => {
  let counter = 0
  kvContract(() => {
    const memory = makeMemoryKv()
    return {
      kv: memory.kv,
      prefix: () => `/t${counter++}/`,
      expiringLease: () =>
        memory.kv.lease(60).pipe(Effect.map((lease) => ({ id: lease.id, expire: Effect.sync(() => memory.expireLease(lease.id)) })))
    }
  })
})
