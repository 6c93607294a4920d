/**
 * The Kv contract (packages/cluster/src/kvContract.ts) on a real etcd started here, so the
 * in-memory fake the lease tests use is held to what etcd does. A lease is made to expire
 * for real: granted with a 2 s TTL and never kept alive, then the test waits until etcd
 * itself reports the lease gone (`etcdctl lease timetolive` says -1).
 */
import { afterAll, beforeAll, describe } from "bun:test"
import { Etcd3 } from "etcd3"
import { Effect } from "effect"
import { etcdKv } from "@tscni/cluster/etcdKv"
import { kvContract } from "@tscni/cluster/kvContract"
import { type RunningEtcd, startEtcd } from "./etcd.ts"

let etcd: RunningEtcd
let client: Etcd3

beforeAll(async () => {
  etcd = await startEtcd()
  client = new Etcd3({ hosts: etcd.endpoint })
})

afterAll(async () => {
  client?.close()
  await etcd?.stop()
})

/** Waits until etcd says the lease no longer exists (its TTL ran out with no keep-alive). */
const untilExpired = (id: string) =>
  Effect.promise(async () => {
    const hex = BigInt(id).toString(16)
    for (;;) {
      const ttl = /remaining\((-?\d+)s\)|already expired/.exec(etcd.etcdctl("lease", "timetolive", hex))
      if (ttl === null || ttl[0] === "already expired" || Number(ttl[1]) < 0) return
      await Bun.sleep(100)
    }
  })

describe("the Kv contract on etcd (Debian's etcd-server, started by the test)", () => {
  let counter = 0
  kvContract(() => ({
    kv: etcdKv(client),
    prefix: () => `/contract-${process.pid}-${counter++}/`,
    expiringLease: () =>
      Effect.promise(() => client.lease(2, { autoKeepAlive: false }).grant()).pipe(
        Effect.map((id) => ({ id, expire: untilExpired(id) }))
      )
  }))
})
