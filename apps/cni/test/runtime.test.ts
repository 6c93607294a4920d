import { afterEach, describe, expect, test } from "bun:test"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { Effect } from "effect"
import { cachePath, decodeConfig } from "../src/cache.ts"
import type { Attachment } from "../src/chain.ts"
import { addNetwork, checkNetwork, delNetwork, gcNetwork, openNetwork, statusNetwork } from "../src/runtime.ts"
import { makeSandbox, run, runFail, type Sandbox } from "./fakes.ts"

let box: Sandbox
afterEach(() => box.remove())

const attachment = (containerId = "c1", extra: Partial<Attachment> = {}): Attachment => ({
  containerId,
  netns: `/var/run/netns/${containerId}`,
  ifname: "eth0",
  cniArgs: [["K8S_POD_NAME", "web"]],
  capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }], bandwidth: { ingressRate: 1000 } },
  ...extra
})

const dirs = () => ({ confDir: box.confDir, cniPath: `${box.root}/empty:${box.binDir}`, cacheDir: box.cacheDir })
const open = (name = "net") => openNetwork(dirs(), name)
const USE_FLAGS = { args: false, capabilities: false }
const key = (containerId = "c1") => cachePath(box.cacheDir, { network: "net", containerId, ifname: "eth0" })

/** A three-plugin list: a (main), b (chained, old result version), c (chained). */
const setup = (list: Record<string, unknown> = {}, fakes: Record<string, Parameters<Sandbox["plugin"]>[1]> = {}) => {
  box = makeSandbox()
  box.plugin("a", fakes.a ?? { result: { cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: "/x" }], ips: [{ address: "10.1.0.2/24", gateway: "10.1.0.1", interface: 0 }] } })
  box.plugin("b", fakes.b ?? { result: { cniVersion: "0.4.0", interfaces: [{ name: "eth0" }], ips: [{ version: "4", address: "10.1.0.2/24", interface: 0 }], dns: { nameservers: ["1.1.1.1"] } } })
  box.plugin("c", fakes.c ?? { result: { cniVersion: "1.0.0", interfaces: [{ name: "eth0" }], ips: [{ address: "10.1.0.2/24", interface: 0 }], routes: [{ dst: "0.0.0.0/0" }] } })
  box.conf("10-net.conflist", {
    cniVersion: "1.0.0",
    name: "net",
    plugins: [
      { type: "a", capabilities: { portMappings: true }, own: 1 },
      { type: "b", capabilities: { bandwidth: true, portMappings: false } },
      { type: "c" }
    ],
    ...list
  })
}

describe("ADD", () => {
  test("runs forward, threads prevResult converted into the list's version, caches the final result", async () => {
    setup()
    const lines: Array<string> = []
    const network = await run(open(), lines)
    const result = await run(addNetwork(network, attachment()), lines)
    const calls = box.log()
    expect(calls.map((c) => `${c.plugin} ${c.command}`)).toEqual(["a ADD", "b ADD", "c ADD"])
    expect(calls[0]?.stdin).toEqual({ type: "a", capabilities: { portMappings: true }, own: 1, name: "net", cniVersion: "1.0.0", runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] } })
    expect(calls[0]?.stdin.prevResult).toBeUndefined()
    // a's result as prevResult of b, in 1.0.0
    expect(calls[1]?.stdin.prevResult).toEqual({ cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: "/x" }], ips: [{ interface: 0, address: "10.1.0.2/24", gateway: "10.1.0.1" }] })
    expect(calls[1]?.stdin.runtimeConfig).toEqual({ bandwidth: { ingressRate: 1000 } })
    // b answered 0.4.0: c gets it converted to 1.0.0 (no ips[].version)
    expect(calls[2]?.stdin.prevResult).toEqual({ cniVersion: "1.0.0", interfaces: [{ name: "eth0" }], ips: [{ interface: 0, address: "10.1.0.2/24" }], dns: { nameservers: ["1.1.1.1"] } })
    expect(calls[2]?.stdin.runtimeConfig).toBeUndefined()
    for (const call of calls) {
      expect(call).toMatchObject({ containerId: "c1", netns: "/var/run/netns/c1", ifname: "eth0", args: "K8S_POD_NAME=web", path: `${box.root}/empty:${box.binDir}` })
    }
    expect(result).toEqual({ cniVersion: "1.0.0", interfaces: [{ name: "eth0" }], ips: [{ interface: 0, address: "10.1.0.2/24" }], routes: [{ dst: "0.0.0.0/0" }] })
    const cached = JSON.parse(readFileSync(key(), "utf8"))
    expect(cached).toMatchObject({ kind: "cniCacheV1", containerId: "c1", ifName: "eth0", networkName: "net", netns: "/var/run/netns/c1", cniArgs: [["K8S_POD_NAME", "web"]], result })
    expect(JSON.parse(decodeConfig(cached.config)).name).toBe("net")
    expect(lines.map((l) => l.replace(/\(\d+ ms\)/, "(N ms)"))).toEqual(["a ADD… ok (N ms)", "b ADD… ok (N ms)", "c ADD… ok (N ms)"])
  })

  test("stops at the first failure, reports the plugin's CNI error and writes no cache", async () => {
    setup({}, { b: { failOn: "ADD", error: { code: 11, msg: "busy", details: "try later" } } })
    const lines: Array<string> = []
    const network = await run(open())
    const error = await runFail(addNetwork(network, attachment()), lines)
    expect(error).toMatchObject({ _tag: "PluginFailed", plugin: "b", verb: "ADD", code: 11, msg: "busy", details: "try later" })
    expect(box.log().map((c) => `${c.plugin} ${c.command}`)).toEqual(["a ADD", "b ADD"])
    expect(existsSync(key())).toBe(false)
    expect(lines.at(-1)).toMatch(/^b ADD… failed/)
  })

  test("a plugin dying without a CNI error, and one not in any bin dir, are errors naming it", async () => {
    setup({}, { c: { crashOn: "ADD" } })
    const network = await run(open())
    const crash = await runFail(addNetwork(network, attachment()))
    expect(crash).toMatchObject({ plugin: "c", verb: "ADD", code: 5 })
    expect(crash._tag === "PluginFailed" && crash.details).toContain("boom")
    box.conf("10-net.conflist", { cniVersion: "1.0.0", name: "net", plugins: [{ type: "missing" }] })
    const missing = await runFail(Effect.flatMap(open(), (n) => addNetwork(n, attachment())))
    expect(missing).toMatchObject({ plugin: "missing", code: 5, msg: expect.stringContaining("failed to find plugin") })
  })
})

describe("DEL and CHECK", () => {
  test("DEL runs in reverse with the cached result, then removes the cache entry", async () => {
    setup()
    const network = await run(open())
    const result = await run(addNetwork(network, attachment()))
    box.clearLog()
    await run(delNetwork(network, attachment("c1", { cniArgs: [], capabilityArgs: {} }), { args: true, capabilities: true }))
    const calls = box.log()
    expect(calls.map((c) => `${c.plugin} ${c.command}`)).toEqual(["c DEL", "b DEL", "a DEL"])
    for (const call of calls) expect(call.stdin.prevResult).toEqual(result)
    // flags not given: the cached args stand in
    expect(calls[2]?.args).toBe("K8S_POD_NAME=web")
    expect(calls[2]?.stdin.runtimeConfig).toEqual({ portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] })
    expect(existsSync(key())).toBe(false)
  })

  test("DEL with a corrupt cache entry drops it and goes on without prevResult", async () => {
    setup()
    const network = await run(open())
    await run(addNetwork(network, attachment()))
    writeFileSync(key(), "{ corrupt")
    box.clearLog()
    const lines: Array<string> = []
    await run(delNetwork(network, attachment(), USE_FLAGS), lines)
    expect(box.log().map((c) => [c.plugin, c.stdin.prevResult])).toEqual([["c", undefined], ["b", undefined], ["a", undefined]])
    expect(existsSync(key())).toBe(false)
    expect(lines.some((l) => l.includes("corrupt"))).toBe(true)
  })

  test("DEL without any cache entry still runs every plugin; a failing DEL keeps the entry", async () => {
    setup({}, { b: { failOn: "DEL", error: { code: 5, msg: "stuck" } } })
    const network = await run(open())
    await run(addNetwork(network, attachment()))
    box.clearLog()
    const error = await runFail(delNetwork(network, attachment(), USE_FLAGS))
    expect(error).toMatchObject({ plugin: "b", verb: "DEL", msg: "stuck" })
    expect(box.log().map((c) => c.plugin)).toEqual(["c", "b"])
    expect(existsSync(key())).toBe(true)
    box.clearLog()
    const other = await run(delNetwork(network, attachment("c9"), USE_FLAGS).pipe(Effect.flip))
    expect(other).toMatchObject({ plugin: "b" })
    expect(box.log().every((c) => c.stdin.prevResult === undefined)).toBe(true)
  })

  test("DEL of a 0.3.1 list sends no prevResult (libcni: only from 0.4.0)", async () => {
    setup({ cniVersion: "0.3.1" })
    const network = await run(open())
    await run(addNetwork(network, attachment()))
    box.clearLog()
    await run(delNetwork(network, attachment(), USE_FLAGS))
    expect(box.log().map((c) => c.stdin.prevResult)).toEqual([undefined, undefined, undefined])
  })

  test("CHECK runs forward with the cached result; missing cache, disableCheck and old versions", async () => {
    setup()
    const network = await run(open())
    expect(await runFail(checkNetwork(network, attachment(), USE_FLAGS))).toMatchObject({ code: 3 })
    const result = await run(addNetwork(network, attachment()))
    box.clearLog()
    expect(await run(checkNetwork(network, attachment(), USE_FLAGS))).toBe("checked")
    expect(box.log().map((c) => `${c.plugin} ${c.command}`)).toEqual(["a CHECK", "b CHECK", "c CHECK"])
    for (const call of box.log()) expect(call.stdin.prevResult).toEqual(result)

    box.conf("10-net.conflist", { cniVersion: "1.0.0", name: "net", disableCheck: true, plugins: [{ type: "a" }] })
    box.clearLog()
    expect(await run(Effect.flatMap(open(), (n) => checkNetwork(n, attachment(), USE_FLAGS)))).toBe("disabled")
    expect(box.log()).toEqual([])

    box.conf("10-net.conflist", { cniVersion: "0.3.1", name: "net", plugins: [{ type: "a" }] })
    expect(await runFail(Effect.flatMap(open(), (n) => checkNetwork(n, attachment(), USE_FLAGS)))).toMatchObject({ code: 1 })
  })

  test("CHECK stops at the first failing plugin", async () => {
    setup({}, { a: { failOn: "CHECK", error: { code: 100, msg: "veth gone" } } })
    const network = await run(open())
    await run(addNetwork(network, attachment()))
    box.clearLog()
    expect(await runFail(checkNetwork(network, attachment(), USE_FLAGS))).toMatchObject({ plugin: "a", verb: "CHECK", msg: "veth gone" })
    expect(box.log().map((c) => c.plugin)).toEqual(["a"])
  })
})

describe("version negotiation with plugins", () => {
  test("cniVersions: every plugin is asked VERSION, the highest common version is injected", async () => {
    setup({ cniVersion: "0.4.0", cniVersions: ["1.0.0", "1.1.0"] }, { c: { versions: ["0.4.0", "1.0.0"] } })
    const network = await run(open())
    expect(network.spec.cniVersion).toBe("1.0.0")
    const versionCalls = box.log().filter((c) => c.command === "VERSION")
    expect(versionCalls.map((c) => c.plugin)).toEqual(["a", "b", "c"])
    expect(versionCalls[0]?.stdin).toEqual({ cniVersion: "0.4.0" })
    box.clearLog()
    await run(addNetwork(network, attachment()))
    expect(box.log().map((c) => c.stdin.cniVersion)).toEqual(["1.0.0", "1.0.0", "1.0.0"])
  })
})

describe("GC and STATUS", () => {
  test("GC deletes the cached attachments outside the valid set, then sends GC to every plugin", async () => {
    setup({ cniVersion: "1.1.0" })
    const network = await run(open())
    await run(addNetwork(network, attachment("c1")))
    await run(addNetwork(network, attachment("c2", { netns: "/var/run/netns/gone" })))
    box.clearLog()
    const lines: Array<string> = []
    const alive = (path: string) => path !== "/var/run/netns/gone"
    const report = await run(gcNetwork(network, undefined, alive), lines)
    expect(report).toEqual({ deleted: [{ containerID: "c2", ifname: "eth0" }], kept: [{ containerID: "c1", ifname: "eth0" }], collected: true, disabled: false })
    const calls = box.log()
    expect(calls.map((c) => `${c.plugin} ${c.command} ${c.containerId}`)).toEqual([
      "c DEL c2", "b DEL c2", "a DEL c2", "a GC ", "b GC ", "c GC "
    ])
    // the stale DEL repeats what ADD had: netns, args, capabilities from the cache
    expect(calls[2]).toMatchObject({ netns: "/var/run/netns/gone", args: "K8S_POD_NAME=web" })
    const valid = [{ containerID: "c1", ifname: "eth0" }]
    expect(calls[3]?.stdin).toEqual({ type: "a", capabilities: { portMappings: true }, own: 1, name: "net", cniVersion: "1.1.0", "cni.dev/valid-attachments": valid, "cni.dev/attachments": valid })
    expect(existsSync(key("c2"))).toBe(false)
    expect(existsSync(key("c1"))).toBe(true)
    expect(lines.filter((l) => l.includes(" GC…"))).toHaveLength(3)
  })

  test("an explicit valid set is used as given; GC errors do not stop the other plugins", async () => {
    setup({ cniVersion: "1.1.0" }, { a: { failOn: "GC", error: { code: 5, msg: "a cannot" } } })
    const network = await run(open())
    await run(addNetwork(network, attachment("c1")))
    box.clearLog()
    const error = await runFail(gcNetwork(network, [{ containerID: "other", ifname: "eth0" }], () => true))
    expect(error).toMatchObject({ _tag: "Failures", failures: [{ what: "a GC", code: 5, msg: "a cannot" }] })
    expect(box.log().map((c) => `${c.plugin} ${c.command}`)).toEqual(["c DEL", "b DEL", "a DEL", "a GC", "b GC", "c GC"])
    expect(box.log()[4]?.stdin["cni.dev/valid-attachments"]).toEqual([{ containerID: "other", ifname: "eth0" }])
  })

  test("below 1.1.0 only the stale DELs run; disableGC runs nothing", async () => {
    setup({ cniVersion: "1.0.0" })
    const network = await run(open())
    await run(addNetwork(network, attachment("c1")))
    box.clearLog()
    expect((await run(gcNetwork(network, [], () => true))).collected).toBe(false)
    expect(box.log().map((c) => c.command)).toEqual(["DEL", "DEL", "DEL"])
    box.conf("10-net.conflist", { cniVersion: "1.1.0", name: "net", disableGC: true, plugins: [{ type: "a" }] })
    box.clearLog()
    expect((await run(Effect.flatMap(open(), (n) => gcNetwork(n, [], () => true)))).disabled).toBe(true)
    expect(box.log()).toEqual([])
  })

  test("STATUS asks every plugin and reports the first that is not ready", async () => {
    setup({ cniVersion: "1.1.0" }, { b: { failOn: "STATUS", error: { code: 50, msg: "no IPs left" } } })
    const network = await run(open())
    expect(await runFail(statusNetwork(network))).toMatchObject({ plugin: "b", verb: "STATUS", code: 50, msg: "no IPs left" })
    expect(box.log().map((c) => c.plugin)).toEqual(["a", "b"])
    expect(box.log()[0]?.stdin).toMatchObject({ name: "net", cniVersion: "1.1.0" })
    box.conf("10-net.conflist", { cniVersion: "1.0.0", name: "net", plugins: [{ type: "b" }] })
    expect(await run(Effect.flatMap(open(), statusNetwork))).toBe("unsupported")
  })
})
