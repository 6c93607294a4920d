/**
 * The agent's policy enforcement on the mock kernel and the in-memory store: the table is
 * replaced once at start, then changed by differences; a served ADD is enforced before it
 * returns (and a failure to enforce fails it, changing nothing); DEL removes the pod's
 * dispatch and its endpoint record; undecodable objects are reported, not enforced.
 */
import { describe, expect, test } from "bun:test"
import { Effect, Fiber } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { makeMockBackend } from "@tscni/backend-mock"
import { POLICY_TABLE } from "@tscni/policy/nft"
import { makeMemoryKv } from "../src/memoryKv.ts"
import { makePolicyAgent, type PolicyStatus } from "../src/policyAgent.ts"
import { etcdPolicySource } from "../src/policySource.ts"

const PREFIX = "/tscni/network"
const put = (kv: ReturnType<typeof makeMemoryKv>["kv"], key: string, value: unknown) =>
  Effect.runPromise(Effect.gen(function*() {
    const { entries } = yield* kv.list(key)
    const current = entries.find((e) => e.key === key)
    const text = JSON.stringify(value)
    if (current === undefined) yield* kv.createIfAbsent(key, text)
    else yield* kv.replaceIf(key, current.modRevision, text)
    return (yield* kv.list(key)).revision
  }))

const denyAll = { metadata: { name: "deny", namespace: "x" }, spec: { podSelector: {} } }

/** An agent for node1 over a fresh store and mock kernel (or the given ones), its loop running. */
const start = async (given?: { readonly memory: ReturnType<typeof makeMemoryKv>; readonly mock: ReturnType<typeof makeMockBackend> }) => {
  const memory = given?.memory ?? makeMemoryKv()
  const mock = given?.mock ?? makeMockBackend()
  const statuses: Array<PolicyStatus> = []
  const agent = await Effect.runPromise(makePolicyAgent(etcdPolicySource(memory.kv, PREFIX), "node1", (s) => void statuses.push(s)).pipe(Effect.provideService(Backend, mock.backend)))
  const fiber = Effect.runFork(agent.run.pipe(Effect.provideService(Backend, mock.backend)))
  /** resolves once the kernel reflects `revision` (a condition polled, not a pause hoped long enough) */
  const enforced = async (revision: bigint) => {
    for (let i = 0; i < 2000 && !statuses.some((s) => s.appliedRevision >= revision); i++) await Bun.sleep(1)
    expect(statuses.some((s) => s.appliedRevision >= revision)).toBe(true)
  }
  const elements = () =>
    (mock.control.snapshot().namespaces[HOST_NETNS]!.nftTables.find((t) => t.name === POLICY_TABLE.name)?.elements ?? [])
      .filter((e) => e.set.startsWith("ingress") || e.set.startsWith("egress")).map((e) => `${e.set} ${e.key}`).sort()
  const run = <A, E>(effect: Effect.Effect<A, E, Backend>) => Effect.runPromise(effect.pipe(Effect.provideService(Backend, mock.backend)))
  return { memory, mock, agent, statuses, enforced, elements, run, stop: () => Effect.runPromise(Fiber.interrupt(fiber)) }
}

describe("policy enforcement in the agent (mock kernel, in-memory store)", () => {
  test("a served ADD is enforced before it returns, its endpoint recorded; DEL undoes both", async () => {
    const a = await start()
    try {
      await a.enforced(await put(a.memory.kv, `${PREFIX}/policies/x/deny`, denyAll))
      expect(a.elements()).toEqual([])
      await a.run(a.agent.attached({ namespace: "x", name: "a", containerID: "c1", ips: ["10.0.1.1", "fd00::1"] }))
      // no waiting: the ADD's return is the moment
      expect(a.elements()).toEqual(["ingress4 10.0.1.1", "ingress6 fd00::1"])
      const endpoint = (await Effect.runPromise(a.memory.kv.list(`${PREFIX}/endpoints/x/a`))).entries[0]
      expect(JSON.parse(endpoint!.value)).toEqual({ node: "node1", ips: ["10.0.1.1", "fd00::1"], containerID: "c1" })
      // another container's DEL (an old sandbox of the same pod) changes nothing
      await a.run(a.agent.detached("c0"))
      expect(a.elements()).toEqual(["ingress4 10.0.1.1", "ingress6 fd00::1"])
      await a.run(a.agent.detached("c1"))
      expect(a.elements()).toEqual([])
      expect((await Effect.runPromise(a.memory.kv.list(`${PREFIX}/endpoints/`))).entries).toEqual([])
    } finally {
      await a.stop()
    }
  })

  test("an ADD the kernel refuses to enforce fails and changes nothing; the next change enforces it all", async () => {
    const a = await start()
    try {
      await a.enforced(await put(a.memory.kv, `${PREFIX}/policies/x/deny`, denyAll))
      const before = a.mock.control.snapshot()
      a.mock.control.failWhen((call) => call.operation === "changeNftTable")
      const failed = await a.run(Effect.result(a.agent.attached({ namespace: "x", name: "a", containerID: "c1", ips: ["10.0.1.1"] })))
      expect(failed._tag).toBe("Failure")
      expect(a.mock.control.diff(before, a.mock.control.snapshot())).toEqual([])
      a.mock.control.clearFaults()
      const calls = a.mock.control.calls().length
      // the pod's record stays in memory: the next enforcement (any change) includes it, and
      // after a refused write it replaces the whole table rather than trusting a difference
      await a.enforced(await put(a.memory.kv, `${PREFIX}/namespaces/x`, { metadata: { name: "x", labels: { ns: "x" } } }))
      expect(a.elements()).toEqual(["ingress4 10.0.1.1"])
      expect(a.mock.control.calls().slice(calls).map((c) => c.operation)).toEqual(["replaceNftTable"])
    } finally {
      await a.stop()
    }
  })

  test("pods, labels and policies from the store: a Pod object written after the ADD takes effect; a deleted policy stops being enforced", async () => {
    const a = await start()
    try {
      await a.run(a.agent.attached({ namespace: "x", name: "a", containerID: "c1", ips: ["10.0.1.1"] }))
      const onlyA = { metadata: { name: "only-a", namespace: "x" }, spec: { podSelector: { matchLabels: { pod: "a" } } } }
      await a.enforced(await put(a.memory.kv, `${PREFIX}/policies/x/only-a`, onlyA))
      // no Pod object yet: no labels, not selected
      expect(a.elements()).toEqual([])
      await a.enforced(await put(a.memory.kv, `${PREFIX}/pods/x/a`, { metadata: { name: "a", namespace: "x", labels: { pod: "a" } } }))
      expect(a.elements()).toEqual(["ingress4 10.0.1.1"])
      const revision = await Effect.runPromise(Effect.gen(function*() {
        const { entries } = yield* a.memory.kv.list(`${PREFIX}/policies/x/only-a`)
        yield* a.memory.kv.deleteIf(`${PREFIX}/policies/x/only-a`, entries[0]!.modRevision)
        return (yield* a.memory.kv.list(`${PREFIX}/`)).revision
      }))
      await a.enforced(revision)
      expect(a.elements()).toEqual([])
    } finally {
      await a.stop()
    }
  })

  test("an object that cannot be decoded is reported and not enforced; fixing it enforces it", async () => {
    const a = await start()
    try {
      await a.run(a.agent.attached({ namespace: "x", name: "a", containerID: "c1", ips: ["10.0.1.1"] }))
      await a.enforced(await put(a.memory.kv, `${PREFIX}/policies/x/bad`, { metadata: { name: "bad" }, spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.1/8" } }] }] } }))
      expect(a.statuses.at(-1)!.rejected).toEqual([`${PREFIX}/policies/x/bad: NetworkPolicy x/bad: spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.1/8' has host bits set`])
      expect(a.elements()).toEqual([])
      await a.enforced(await put(a.memory.kv, `${PREFIX}/policies/x/bad`, denyAll))
      expect(a.statuses.at(-1)!.rejected).toEqual([])
      expect(a.elements()).toEqual(["ingress4 10.0.1.1"])
    } finally {
      await a.stop()
    }
  })

  test("a restarted agent replaces the table in one call and then only changes it; the old table enforces until then", async () => {
    const first = await start()
    await first.run(first.agent.attached({ namespace: "x", name: "a", containerID: "c1", ips: ["10.0.1.1"] }))
    await first.enforced(await put(first.memory.kv, `${PREFIX}/policies/x/deny`, denyAll))
    await first.stop()
    const table = () => first.mock.control.snapshot().namespaces[HOST_NETNS]!.nftTables
    const before = table()
    const calls = first.mock.control.calls().length
    const second = await start({ memory: first.memory, mock: first.mock })
    try {
      await second.enforced((await Effect.runPromise(first.memory.kv.list(`${PREFIX}/`))).revision)
      const made = first.mock.control.calls().slice(calls).map((c) => c.operation)
      expect(made).toEqual(["replaceNftTable"])
      expect(table()).toEqual(before)
    } finally {
      await second.stop()
    }
  })
})
