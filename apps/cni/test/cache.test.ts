import { afterEach, describe, expect, test } from "bun:test"
import { readFileSync, statSync, writeFileSync } from "node:fs"
import { Effect } from "effect"
import { type CacheEntry, cachePath, decodeConfig, encodeConfig, listCache, readCache, removeCache, writeCache } from "../src/cache.ts"
import { makeSandbox, type Sandbox } from "./fakes.ts"

let box: Sandbox
afterEach(() => box.remove())

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

const entry = (containerId: string, extra: Partial<CacheEntry> = {}): CacheEntry => ({
  kind: "cniCacheV1",
  containerId,
  config: encodeConfig('{"name":"net"}'),
  ifName: "eth0",
  networkName: "net",
  netns: `/var/run/netns/${containerId}`,
  result: { cniVersion: "1.0.0", ips: [{ address: "10.1.0.2/24" }] },
  ...extra
})

describe("result cache", () => {
  test("libcni's file name, format and modes (dir 0700, file 0600, config in base64)", async () => {
    box = makeSandbox()
    const path = await run(writeCache(box.cacheDir, entry("c1", { cniArgs: [["K", "V"]], capabilityArgs: { mac: "x" } })))
    expect(path).toBe(`${box.cacheDir}/net-c1-eth0`)
    expect(statSync(box.cacheDir).mode & 0o777).toBe(0o700)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const json = JSON.parse(readFileSync(path, "utf8"))
    expect(Object.keys(json)).toEqual(["kind", "containerId", "config", "ifName", "networkName", "netns", "cniArgs", "capabilityArgs", "result"])
    expect(json.kind).toBe("cniCacheV1")
    expect(decodeConfig(json.config)).toBe('{"name":"net"}')
    expect(json.config).toBe(Buffer.from('{"name":"net"}').toString("base64"))
    expect(json.cniArgs).toEqual([["K", "V"]])
  })

  test("read: Found, Missing, and Corrupt for anything that is not a cniCacheV1 entry", async () => {
    box = makeSandbox()
    await run(writeCache(box.cacheDir, entry("c1")))
    const found = await run(readCache(box.cacheDir, { network: "net", containerId: "c1", ifname: "eth0" }))
    expect(found._tag).toBe("Found")
    if (found._tag === "Found") expect(found.entry.result).toEqual({ cniVersion: "1.0.0", ips: [{ address: "10.1.0.2/24" }] })
    expect((await run(readCache(box.cacheDir, { network: "net", containerId: "c2", ifname: "eth0" })))._tag).toBe("Missing")
    const key = { network: "net", containerId: "bad", ifname: "eth0" }
    writeFileSync(cachePath(box.cacheDir, key), "{ truncated")
    expect(await run(readCache(box.cacheDir, key))).toMatchObject({ _tag: "Corrupt", reason: expect.stringContaining("not JSON") })
    writeFileSync(cachePath(box.cacheDir, key), JSON.stringify({ ...entry("bad"), kind: "cniCacheV2" }))
    expect(await run(readCache(box.cacheDir, key))).toMatchObject({ _tag: "Corrupt" })
    await run(removeCache(box.cacheDir, key))
    await run(removeCache(box.cacheDir, key))
    expect((await run(readCache(box.cacheDir, key)))._tag).toBe("Missing")
  })

  test("listing: only readable entries of the network, in file-name order", async () => {
    box = makeSandbox()
    await run(writeCache(box.cacheDir, entry("c2")))
    await run(writeCache(box.cacheDir, entry("c1")))
    await run(writeCache(box.cacheDir, entry("c3", { networkName: "net-b" })))
    writeFileSync(`${box.cacheDir}/net-junk-eth0`, "junk")
    const entries = await run(listCache(box.cacheDir, "net"))
    expect(entries.map((e) => e.containerId)).toEqual(["c1", "c2"])
    expect(await run(listCache(`${box.root}/none`, "net"))).toEqual([])
  })
})
