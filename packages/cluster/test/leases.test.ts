import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { formatCidr } from "@tscni/ip"
import { type ClusterConfig, decodeClusterConfig } from "../src/config.ts"
import type { KvShape } from "../src/kv.ts"
import { claimSubnets, releaseSubnets, subnetsPrefix } from "../src/leases.ts"
import { makeMemoryKv } from "../src/memoryKv.ts"

const PREFIX = "/tscni/network"
const config = (json: object): ClusterConfig => Effect.runSync(decodeClusterConfig(JSON.stringify(json)))
const small = config({ network: "10.244.0.0/22", subnetLen: 24, backend: { type: "host-gw" } })
const identity = (node: string) => ({ node, publicIp: `192.0.2.${node.length}`, backend: { type: "host-gw" as const } })

/** Claims for `node` under a fresh store lease; the subnets it got and how. */
const claim = (kv: KvShape, node: string, previous: ReadonlyArray<string> = [], cfg = small) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const lease = yield* kv.lease(60)
    const held = yield* claimSubnets(kv, PREFIX, cfg, identity(node), lease.id, previous)
    return { lease: lease.id, held: held.map((h) => `${formatCidr(h.subnet)} ${h.outcome}`) }
  })))

const stored = (kv: KvShape) =>
  Effect.runPromise(kv.list(subnetsPrefix(PREFIX))).then(({ entries }) =>
    entries.map((e) => `${e.key.slice(subnetsPrefix(PREFIX).length)} ${JSON.parse(e.value).node} ${e.lease === undefined ? "reserved" : "leased"}`))

describe("claiming a node subnet", () => {
  test("nodes get the lowest free subnets, one each, and each claim is bound to its store lease", async () => {
    const { kv } = makeMemoryKv()
    expect((await claim(kv, "a")).held).toEqual(["10.244.0.0/24 new"])
    expect((await claim(kv, "b")).held).toEqual(["10.244.1.0/24 new"])
    expect(await stored(kv)).toEqual(["10.244.0.0-24 a leased", "10.244.1.0-24 b leased"])
  })

  test("a restart (a new store lease) keeps the node's subnet, moved to the new lease: the old lease's expiry no longer frees it", async () => {
    const memory = makeMemoryKv()
    const first = await claim(memory.kv, "a")
    await claim(memory.kv, "b")
    const second = await claim(memory.kv, "a")
    expect(second.held).toEqual(["10.244.0.0/24 kept"])
    memory.expireLease(first.lease)
    expect(await stored(memory.kv)).toEqual(["10.244.0.0-24 a leased", "10.244.1.0-24 b leased"])
    const [entry] = (await Effect.runPromise(memory.kv.list(`${subnetsPrefix(PREFIX)}10.244.0.0-24`))).entries
    expect(entry!.lease).toBe(second.lease)
  })

  test("after its lease expired, a node gets its previous subnet (from its node file) back if no one took it", async () => {
    const memory = makeMemoryKv()
    await claim(memory.kv, "a")
    const b = await claim(memory.kv, "b")
    memory.expireLease(b.lease)
    expect(await stored(memory.kv)).toEqual(["10.244.0.0-24 a leased"])
    // a third node joining meanwhile takes the lowest free one: b's old subnet
    const c = await claim(memory.kv, "c")
    expect(c.held).toEqual(["10.244.1.0/24 new"])
    // b comes back: its previous subnet is taken, so it gets another, never c's
    expect((await claim(memory.kv, "b", ["10.244.1.0/24"])).held).toEqual(["10.244.2.0/24 new"])
    memory.expireLease(c.lease)
    const d = await claim(memory.kv, "d", ["10.244.3.0/24"])
    expect(d.held).toEqual(["10.244.3.0/24 new"])
  })

  test("a reservation (a claim bound to no lease) is the node's whatever else it held, stays unbound, and is never released", async () => {
    const memory = makeMemoryKv()
    await Effect.runPromise(memory.kv.createIfAbsent(`${subnetsPrefix(PREFIX)}10.244.2.0-24`, JSON.stringify({ node: "r" })))
    // another node never takes a subnet reserved for r
    expect((await claim(memory.kv, "a", ["10.244.2.0/24"])).held).toEqual(["10.244.0.0/24 new"])
    expect((await claim(memory.kv, "r")).held).toEqual(["10.244.2.0/24 reserved"])
    expect(await stored(memory.kv)).toEqual(["10.244.0.0-24 a leased", "10.244.2.0-24 r reserved"])
    // the reservation now carries r's address, and is still bound to no lease
    const [entry] = (await Effect.runPromise(memory.kv.list(`${subnetsPrefix(PREFIX)}10.244.2.0-24`))).entries
    expect(JSON.parse(entry!.value)).toEqual({ node: "r", publicIp: "192.0.2.1", backend: { type: "host-gw" } })
    expect(await Effect.runPromise(releaseSubnets(memory.kv, PREFIX, small, "r"))).toEqual([])
    expect((await Effect.runPromise(releaseSubnets(memory.kv, PREFIX, small, "a"))).map(formatCidr)).toEqual(["10.244.0.0/24"])
    expect(await stored(memory.kv)).toEqual(["10.244.2.0-24 r reserved"])
  })

  test("a full network is a LeaseError naming it; a key that is not a claim still holds its subnet", async () => {
    const { kv } = makeMemoryKv()
    await Effect.runPromise(kv.createIfAbsent(`${subnetsPrefix(PREFIX)}10.244.0.0-24`, "not json"))
    for (const node of ["a", "b", "c"]) await claim(kv, node)
    const error = await claim(kv, "d").catch((e: unknown) => e)
    expect(String(error)).toContain("no free /24 in 10.244.0.0/22: all 4 are held")
  })

  test("two nodes racing for one subnet: the loser of the create takes the next one", async () => {
    const memory = makeMemoryKv()
    // b's create lands between a's list and a's create
    let raced = false
    const racing: KvShape = {
      ...memory.kv,
      createIfAbsent: (key, value, lease) =>
        Effect.gen(function*() {
          if (!raced) {
            raced = true
            yield* memory.kv.createIfAbsent(key, JSON.stringify({ node: "b" }), (yield* Effect.scoped(memory.kv.lease(60))).id)
          }
          return yield* memory.kv.createIfAbsent(key, value, lease)
        })
    }
    expect((await claim(racing, "a")).held).toEqual(["10.244.1.0/24 new"])
    expect(await stored(memory.kv)).toEqual(["10.244.0.0-24 b leased", "10.244.1.0-24 a leased"])
  })

  test("dual stack: one subnet per family, IPv4 first, keys in the flannel form", async () => {
    const { kv } = makeMemoryKv()
    const dual = config({ network: "10.244.0.0/16", ipv6Network: "fd00:10:244::/48" })
    expect((await claim(kv, "a", [], dual)).held).toEqual(["10.244.0.0/24 new", "fd00:10:244::/64 new"])
    expect((await claim(kv, "b", [], dual)).held).toEqual(["10.244.1.0/24 new", "fd00:10:244:1::/64 new"])
    expect(await stored(kv)).toContain("fd00:10:244:1::-64 b leased")
  })
})

describe("the cluster config", () => {
  const error = (json: unknown) => Effect.runSync(Effect.flip(decodeClusterConfig(typeof json === "string" ? json : JSON.stringify(json)))).message

  test("defaults: /24 (IPv4) and /64 (IPv6) node subnets, vxlan on port 8472, VNI 1, the MTU from the underlay", () => {
    const c = config({ network: "10.244.0.0/16", ipv6Network: "fd00::/48" })
    expect(c.networks.map((n) => `${formatCidr(n.network)} /${n.subnetLen}`)).toEqual(["10.244.0.0/16 /24", "fd00::/48 /64"])
    expect(c.backend).toEqual({ type: "vxlan", vni: 1, port: 8472 })
    expect(c.mtu).toBeUndefined()
  })

  test("every error names its field", () => {
    expect(error("{")).toContain("cluster config: not JSON")
    expect(error({})).toContain("network")
    expect(error({ network: "10.244.0.1/16" })).toBe("cluster config: network: '10.244.0.1/16' has host bits set (the network is 10.244.0.0/16)")
    expect(error({ network: "fd00::/48" })).toBe("cluster config: network: 'fd00::/48' is not an IPv4 CIDR")
    expect(error({ network: "10.244.0.0/16", subnetLen: 16 })).toContain("subnetLen: 16 must be a whole number from 17")
    expect(error({ network: "10.244.0.0/16", ipv6SubnetLen: 64 })).toContain("ipv6SubnetLen: set without ipv6Network")
    expect(error({ network: "10.244.0.0/16", backend: { type: "udp" } })).toContain("backend.type")
    expect(error({ network: "10.244.0.0/16", backend: { vni: 0 } })).toContain("backend.vni: 0")
    expect(error({ network: "10.244.0.0/16", mtu: 576 })).toContain("mtu: 576")
  })
})
