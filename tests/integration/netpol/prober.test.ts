/**
 * Smoke test of the probe agents (root): two namespaces joined by a veth pair, an agent in
 * each; the probes see the listeners, miss an unused port, and see an nftables drop rule.
 * Everything made here is removed in afterAll, on a failed setup, and on exit.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ip } from "../harness.ts"
import { matrixKey } from "./oracle.ts"
import { diffMatrix, formatMatrix, probeMatrix, type Prober, startProber } from "./prober.ts"

const suffix = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`
const NS_A = `tscni-exp-${suffix}-a`
const NS_B = `tscni-exp-${suffix}-b`
const TABLE = `tscni-exp-${suffix}`
const IP_A = "10.251.7.1"
const IP_B = "10.251.7.2"
const PODS = [{ key: "exp/a", ip: IP_A }, { key: "exp/b", ip: IP_B }]

const made: Array<string> = []
let dir: string | undefined
let prober: Prober | undefined

const cleanup = async (): Promise<void> => {
  await prober?.stop()
  for (const name of made.splice(0)) Bun.spawnSync(["ip", "netns", "del", name])
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  dir = undefined
}
process.once("exit", () => {
  for (const name of made.splice(0)) Bun.spawnSync(["ip", "netns", "del", name])
})

const nftIn = (netns: string, script: string): void => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "nft", "-f", "-"], { stdin: Buffer.from(script), stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`nft: ${out.stderr.toString()}`)
}

/** The source ports nft recorded in set `name` of the test table in `netns`. */
const recordedPorts = (netns: string, name: string): Array<number> => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "nft", "-j", "list", "set", "inet", TABLE, name], { stdout: "pipe" })
  const items = (JSON.parse(out.stdout.toString()) as { nftables: Array<{ set?: { elem?: Array<unknown> } }> }).nftables
  return items.flatMap((item) => item.set?.elem ?? []).map((elem) =>
    typeof elem === "number" ? elem : Number((elem as { elem: { val: number } }).elem.val)
  )
}

beforeAll(async () => {
  try {
    for (const name of [NS_A, NS_B]) {
      ip("netns", "add", name)
      made.push(name)
      ip("-n", name, "link", "set", "lo", "up")
    }
    ip("-n", NS_A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", NS_B)
    for (const [name, address] of [[NS_A, IP_A], [NS_B, IP_B]] as const) {
      ip("-n", name, "addr", "add", `${address}/24`, "dev", "eth0")
      ip("-n", name, "link", "set", "eth0", "up")
    }
    dir = mkdtempSync(join(tmpdir(), "tscni-exp-"))
    prober = await startProber([{ netns: NS_A, key: "exp/a" }, { netns: NS_B, key: "exp/b" }], dir)
  } catch (error) {
    await cleanup()
    throw error
  }
}, { timeout: 60_000 })

afterAll(cleanup, { timeout: 30_000 })

const need = (): Prober => {
  if (prober === undefined) throw new Error("no prober")
  return prober
}

test("TCP and UDP on 80 and 81 are answered both ways, over IPv4 and IPv6 loopback too", async () => {
  const all = [80, 81].flatMap((port) => (["TCP", "UDP"] as const).map((protocol) => ({ port, protocol })))
  expect(await need().probe("exp/a", all.map((p) => ({ ip: IP_B, ...p })))).toEqual([true, true, true, true])
  expect(await need().probe("exp/b", all.map((p) => ({ ip: IP_A, ...p })))).toEqual([true, true, true, true])
  expect(await need().probe("exp/a", all.map((p) => ({ ip: "::1", ...p })))).toEqual([true, true, true, true])
  expect(await need().probe("exp/a", all.map((p) => ({ ip: "127.0.0.1", ...p })))).toEqual([true, true, true, true])
}, 30_000)

test("an unused port is reported unreachable", async () => {
  expect(await need().probe("exp/a", [
    { ip: IP_B, port: 82, protocol: "TCP" },
    { ip: IP_B, port: 82, protocol: "UDP" },
    { ip: IP_B, port: 80, protocol: "UDP" }
  ], 1000)).toEqual([false, false, true])
}, 30_000)

test("the matrix helpers: every cell allowed, no difference from an all-allowed expectation", async () => {
  const actual = await probeMatrix(need(), PODS, [80, 81], ["TCP", "UDP"], 1500)
  expect(actual.size).toBe(2 * 2 * 2 * 2)
  expect([...actual.values()].every((value) => value)).toBe(true)
  const expected = new Map([...actual.keys()].map((key) => [key, true]))
  expect(diffMatrix(expected, actual)).toEqual([])
  expected.set(matrixKey("exp/a", "exp/b", 81, "UDP"), false)
  expect(diffMatrix(expected, actual)).toEqual(["exp/a -> exp/b 81/UDP: expected denied, got allowed"])
  expect(formatMatrix(actual, expected)).toContain("!")
}, 30_000)

test("every probe leaves from a source port of its own", async () => {
  nftIn(NS_B, [
    `add table inet ${TABLE}`,
    `add set inet ${TABLE} udp_sources { type inet_service; flags dynamic; }`,
    `add set inet ${TABLE} tcp_sources { type inet_service; flags dynamic; }`,
    `add chain inet ${TABLE} record { type filter hook input priority -10; policy accept; }`,
    `add rule inet ${TABLE} record udp dport 80 add @udp_sources { udp sport }`,
    `add rule inet ${TABLE} record tcp dport 80 tcp flags & (syn | ack) == syn add @tcp_sources { tcp sport }`
  ].join("\n"))
  const round = Array.from({ length: 5 }, () => [
    { ip: IP_B, port: 80, protocol: "TCP" as const },
    { ip: IP_B, port: 80, protocol: "UDP" as const }
  ]).flat()
  expect(await need().probe("exp/a", round)).toEqual(round.map(() => true))
  expect(await need().probe("exp/a", round)).toEqual(round.map(() => true))
  for (const set of ["udp_sources", "tcp_sources"]) {
    const ports = recordedPorts(NS_B, set)
    expect({ set, count: ports.length, distinct: new Set(ports).size, low: ports.every((port) => port >= 20_000) })
      .toEqual({ set, count: 10, distinct: 10, low: true })
  }
}, 30_000)

test("an nftables drop of UDP 81 in the destination is seen, and only that", async () => {
  nftIn(NS_B, [
    `add table inet ${TABLE}`,
    `add chain inet ${TABLE} input { type filter hook input priority 0; policy accept; }`,
    `add rule inet ${TABLE} input udp dport 81 drop`
  ].join("\n"))
  expect(await need().probe("exp/a", [
    { ip: IP_B, port: 81, protocol: "UDP" },
    { ip: IP_B, port: 80, protocol: "UDP" },
    { ip: IP_B, port: 81, protocol: "TCP" }
  ], 1000)).toEqual([false, true, true])
  // the other direction does not pass B's input hook on the way in
  expect(await need().probe("exp/b", [{ ip: IP_A, port: 81, protocol: "UDP" }], 1000)).toEqual([true])
}, 30_000)

test("stop ends every agent in the namespaces, and may be called again", async () => {
  const pids = (name: string) => ip("netns", "pids", name).trim()
  expect(pids(NS_A)).not.toBe("")
  await need().stop()
  await need().stop()
  expect({ a: pids(NS_A), b: pids(NS_B) }).toEqual({ a: "", b: "" })
  await expect(need().probe("exp/a", [{ ip: IP_B, port: 80, protocol: "TCP" }])).rejects.toThrow("stopped")
}, 30_000)
