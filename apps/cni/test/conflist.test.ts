import { afterEach, describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { listNetworks, loadNetwork } from "../src/conflist.ts"
import { makeSandbox, type Sandbox } from "./fakes.ts"

let box: Sandbox
const fresh = () => (box = makeSandbox())
afterEach(() => box.remove())

const load = (name: string) => Effect.runPromise(loadNetwork(box.confDir, name))
const loadError = (name: string) => Effect.runPromise(Effect.flip(loadNetwork(box.confDir, name)))

const list = (name: string, type: string, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name,
  plugins: [{ type }],
  ...extra
})

describe("conflist loading", () => {
  test("conflists win over single configs, and the first file in lexical order wins", async () => {
    fresh()
    box.conf("05-net.conf", { cniVersion: "1.0.0", name: "net", type: "single" })
    box.conf("20-net.conflist", list("net", "second"))
    box.conf("10-net.conflist", list("net", "first"))
    box.conf("99-other.conflist", list("other", "x"))
    const loaded = await load("net")
    expect(loaded.file.endsWith("10-net.conflist")).toBe(true)
    expect(loaded.plugins.map((p) => p.type)).toEqual(["first"])
    const names = await Effect.runPromise(listNetworks(box.confDir))
    expect(names.map((n) => n.name)).toEqual(["net", "net", "other", "net"])
  })

  test("a .conf single-plugin file is wrapped into a one-plugin list, as libcni does", async () => {
    fresh()
    box.conf("10-lo.conf", { cniVersion: "0.4.0", name: "lo", type: "loopback", extra: { a: 1 } })
    const loaded = await load("lo")
    expect(loaded.list.cniVersion).toBe("0.4.0")
    expect(loaded.plugins).toEqual([{ cniVersion: "0.4.0", name: "lo", type: "loopback", extra: { a: 1 } }])
    // the cached `config` is the wrapped list, as ConfListFromConf marshals it
    expect(JSON.parse(loaded.bytes)).toEqual({
      cniVersion: "0.4.0",
      name: "lo",
      plugins: [{ cniVersion: "0.4.0", name: "lo", type: "loopback", extra: { a: 1 } }]
    })
  })

  test(".json files are single configs too; .conf and .json sort together", async () => {
    fresh()
    box.conf("20-a.conf", { cniVersion: "1.0.0", name: "a", type: "from-conf" })
    box.conf("10-a.json", { cniVersion: "1.0.0", name: "a", type: "from-json" })
    expect((await load("a")).plugins[0]?.type).toBe("from-json")
  })

  test("a list's bytes are the file as written; unknown keys survive", async () => {
    fresh()
    const text = JSON.stringify(list("n", "bridge", { custom: true }), null, 4)
    box.conf("n.conflist", text)
    const loaded = await load("n")
    expect(loaded.bytes).toBe(text)
    expect(loaded.list.custom).toBe(true)
  })

  test("other extensions and unparseable files are skipped; not found names what is there", async () => {
    fresh()
    box.conf("broken.conflist", "{ not json")
    box.conf("net.txt", list("net", "x"))
    box.conf("a.conflist", list("a", "x"))
    const error = await loadError("net")
    expect(error.code).toBe(7)
    expect(error.msg).toContain("no network named \"net\"")
    expect(error.msg).toContain("networks there: a")
    expect(error.msg).toContain("broken.conflist: not JSON")
  })

  test("an invalid matching list is code 7 naming the file and field", async () => {
    fresh()
    box.conf("bad.conflist", { cniVersion: "1.0.0", name: "bad", plugins: [] })
    const error = await loadError("bad")
    expect(error.code).toBe(7)
    expect(error.msg).toContain("bad.conflist")
    expect(error.msg).toContain("plugins")
  })

  test("a missing conf dir has no networks", async () => {
    fresh()
    const error = await Effect.runPromise(Effect.flip(loadNetwork(`${box.root}/nope`, "x")))
    expect(error.msg).toContain("no network configurations there")
  })

  test("cniVersions without cniVersion: the highest listed is the list's cniVersion", async () => {
    fresh()
    box.conf("v.conflist", { name: "v", cniVersions: ["0.4.0", "1.1.0", "1.0.0"], plugins: [{ type: "x" }] })
    expect((await load("v")).list.cniVersion).toBe("1.1.0")
  })
})
