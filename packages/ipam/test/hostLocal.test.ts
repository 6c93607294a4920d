import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { diskStoreLayer, hostLocalPlugin, memoryStore } from "../src/index.ts"
import { addressesOf, cniEnv, invoke } from "./helpers.ts"

const DATA = "/data"

const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.1.0",
  name: "net",
  type: "host-local",
  ipam: { type: "host-local", dataDir: DATA, ...ipam },
  ...extra
})

const slash29 = { ranges: [[{ subnet: "10.0.0.0/29" }]] }
const dual = { ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "fd00::/64" }]] }

/** A fresh fake store and an invoker bound to it. */
const setup = () => {
  const fake = memoryStore()
  const call = (command: string, config: unknown, extra: Record<string, string> = {}) =>
    invoke(hostLocalPlugin, fake.layer, cniEnv(command, extra), config)
  /** allocation files (address → content) of the network */
  const allocations = () =>
    Object.fromEntries([...fake.files(DATA, "net")].filter(([name]) => /^[0-9a-f.:]+$/.test(name)))
  return { fake, call, allocations }
}

describe("host-local ADD", () => {
  test("allocates one address per range set (dual stack) with the gateway, routes and the store files", async () => {
    const { call, allocations, fake } = setup()
    const add = await call("ADD", conf({ ...dual, routes: [{ dst: "0.0.0.0/0" }] }))
    expect(add.exitCode).toBe(0)
    expect(add.json).toEqual({
      cniVersion: "1.1.0",
      ips: [{ address: "10.0.0.2/24", gateway: "10.0.0.1" }, { address: "fd00::2/64", gateway: "fd00::1" }],
      routes: [{ dst: "0.0.0.0/0" }]
    })
    expect(allocations()).toEqual({ "10.0.0.2": "c1\r\neth0", "fd00::2": "c1\r\neth0" })
    const files = fake.files(DATA, "net")
    expect([files.get("last_reserved_ip.0"), files.get("last_reserved_ip.1"), files.get("boot_id")]).toEqual([
      "10.0.0.2",
      "fd00::2",
      "boot-1\n"
    ])
  })

  test("round robin: a released address is not reused until the range wraps", async () => {
    const { call } = setup()
    const got: Array<string> = []
    for (const id of ["a", "b", "c"]) got.push(...addressesOf((await call("ADD", conf(slash29), { CNI_CONTAINERID: id })).json))
    expect((await call("DEL", conf(slash29), { CNI_CONTAINERID: "a" })).exitCode).toBe(0)
    for (const id of ["d", "e", "f"]) got.push(...addressesOf((await call("ADD", conf(slash29), { CNI_CONTAINERID: id })).json))
    // .2 .3 .4, then .5 .6 and wrap to .2 (released by a)
    expect(got).toEqual(["10.0.0.2/29", "10.0.0.3/29", "10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29", "10.0.0.2/29"])
  })

  test("exhaustion is code 100 naming the range, and allocates nothing", async () => {
    const { call, allocations } = setup()
    const ipam = { ranges: [[{ subnet: "10.0.0.0/30" }]] }
    expect(addressesOf((await call("ADD", conf(ipam), { CNI_CONTAINERID: "a" })).json)).toEqual(["10.0.0.2/30"])
    const full = await call("ADD", conf(ipam), { CNI_CONTAINERID: "b" })
    expect([full.exitCode, full.json?.code, full.json?.msg]).toEqual([
      1,
      100,
      "no IP addresses available in range set ipam.ranges[0]: 10.0.0.1-10.0.0.2"
    ])
    expect(Object.keys(allocations())).toEqual(["10.0.0.2"])
  })

  test("dual stack where the second set is exhausted releases nothing and reserves nothing", async () => {
    const { call, allocations } = setup()
    const ipam = { ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "fd00::/126" }]] }
    for (const id of ["a", "b"]) expect((await call("ADD", conf(ipam), { CNI_CONTAINERID: id })).exitCode).toBe(0)
    const third = await call("ADD", conf(ipam), { CNI_CONTAINERID: "c" })
    expect(third.json?.msg).toBe("no IP addresses available in range set ipam.ranges[1]: fd00::1-fd00::3")
    expect(Object.values(allocations()).filter((owner) => owner.startsWith("c\r\n"))).toEqual([])
  })

  test("requested addresses: runtimeConfig.ips, args.cni.ips, CNI_ARGS IP", async () => {
    const { call } = setup()
    const a = await call("ADD", conf(dual, { runtimeConfig: { ips: ["10.0.0.50/24", "fd00::50/64"] } }), { CNI_CONTAINERID: "a" })
    expect(addressesOf(a.json)).toEqual(["10.0.0.50/24", "fd00::50/64"])
    const b = await call("ADD", conf(dual, { args: { cni: { ips: ["10.0.0.51"] } } }), { CNI_CONTAINERID: "b" })
    // the IPv6 set continues round robin after a's requested fd00::50
    expect(addressesOf(b.json)).toEqual(["10.0.0.51/24", "fd00::51/64"])
    const c = await call("ADD", conf(dual), { CNI_CONTAINERID: "c", CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=fd00::52" })
    expect(addressesOf(c.json)).toEqual(["10.0.0.52/24", "fd00::52/64"])
  })

  test("a requested address someone holds is an error naming it; nothing is reserved", async () => {
    const { call, allocations } = setup()
    await call("ADD", conf(dual, { runtimeConfig: { ips: ["10.0.0.50"] } }), { CNI_CONTAINERID: "a" })
    const before = allocations()
    const taken = await call("ADD", conf(dual, { runtimeConfig: { ips: ["10.0.0.50"] } }), { CNI_CONTAINERID: "b" })
    expect([taken.json?.code, taken.json?.msg]).toEqual([100, "requested IP address 10.0.0.50 is already allocated to a/eth0"])
    expect(allocations()).toEqual(before)
  })

  test("a repeated ADD for the same attachment returns the same addresses", async () => {
    const { call, allocations } = setup()
    const first = await call("ADD", conf(dual))
    const again = await call("ADD", conf(dual))
    expect(again.json).toEqual(first.json!)
    expect(Object.keys(allocations()).length).toBe(2)
  })

  test("two interfaces of one container get separate addresses", async () => {
    const { call } = setup()
    const eth0 = await call("ADD", conf(slash29), { CNI_IFNAME: "eth0" })
    const eth1 = await call("ADD", conf(slash29), { CNI_IFNAME: "eth1" })
    expect([addressesOf(eth0.json), addressesOf(eth1.json)]).toEqual([["10.0.0.2/29"], ["10.0.0.3/29"]])
  })

  test("resolvConf becomes the result's dns", async () => {
    const { call } = setup()
    const dir = mkdtempSync(join(tmpdir(), "tscni-resolv-"))
    const path = join(dir, "resolv.conf")
    writeFileSync(path, "# c\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.org\nsearch a.org b.org\noptions ndots:5\n")
    const add = await call("ADD", conf({ ...slash29, resolvConf: path }))
    rmSync(dir, { recursive: true, force: true })
    expect(add.json?.dns).toEqual({
      nameservers: ["10.0.0.53", "fd00::53"],
      domain: "example.org",
      search: ["a.org", "b.org"],
      options: ["ndots:5"]
    })
    const missing = await call("ADD", conf({ ...slash29, resolvConf: "/nonexistent/resolv.conf" }), { CNI_CONTAINERID: "z" })
    expect([missing.json?.code, String(missing.json?.msg).startsWith("ipam.resolvConf: cannot read")]).toEqual([7, true])
  })

  test("bad configs and bad requests fail before the store is touched", async () => {
    const { call, fake } = setup()
    const cases: Array<[unknown, Record<string, string>, number]> = [
      [conf({ ranges: [[{ subnet: "10.0.0.0/24" }, { subnet: "nope" }]] }), {}, 7],
      [conf(dual, { runtimeConfig: { ips: ["10.9.9.9"] } }), {}, 7],
      [conf(dual), { CNI_ARGS: "FOO=bar" }, 4],
      [conf({ ...slash29, resolvConf: "/nonexistent" }), {}, 7]
    ]
    for (const [config, env, code] of cases) {
      const out = await call("ADD", config, env)
      expect(out.json?.code).toBe(code)
    }
    expect(fake.state.dirs.size).toBe(0)
  })

  test("a store fault at every file operation of a second pod's ADD fails it (code 5) and leaves the allocations as they were", async () => {
    let faults = 0
    for (let k = 1; k <= 200; k++) {
      const { call, fake, allocations } = setup()
      expect((await call("ADD", conf(dual), { CNI_CONTAINERID: "first" })).exitCode).toBe(0)
      const before = allocations()
      let operations = 0
      fake.state.failWhen = () => ++operations === k
      const out = await call("ADD", conf(dual), { CNI_CONTAINERID: "second" })
      fake.state.failWhen = undefined
      if (operations < k) {
        // no fault left to fire: the clean run
        expect(out.exitCode).toBe(0)
        break
      }
      expect({ k, code: out.json?.code, allocations: allocations() }).toEqual({ k, code: 5, allocations: before })
      faults++
    }
    expect(faults).toBeGreaterThan(5)
  })

  test("a store failure while reserving leaves no allocation (code 5)", async () => {
    const { call, fake, allocations } = setup()
    let creates = 0
    fake.state.failWhen = (operation) => operation === "create" && ++creates === 2
    const out = await call("ADD", conf(dual))
    expect(out.json?.code).toBe(5)
    expect(allocations()).toEqual({})
  })
})

describe("host-local DEL", () => {
  test("releases every set of the attachment only; repeated and empty DELs succeed", async () => {
    const { call, allocations } = setup()
    await call("ADD", conf(dual), { CNI_CONTAINERID: "a" })
    await call("ADD", conf(dual), { CNI_CONTAINERID: "b" })
    expect((await call("DEL", conf(dual), { CNI_CONTAINERID: "a" })).exitCode).toBe(0)
    expect(Object.values(allocations())).toEqual(["b\r\neth0", "b\r\neth0"])
    expect((await call("DEL", conf(dual), { CNI_CONTAINERID: "a" })).exitCode).toBe(0)
    expect((await call("DEL", conf(dual), { CNI_CONTAINERID: "never", CNI_NETNS: "" })).exitCode).toBe(0)
  })

  test("DEL on a network never used creates nothing", async () => {
    const { call, fake } = setup()
    expect((await call("DEL", conf(dual))).exitCode).toBe(0)
    expect(fake.state.dirs.size).toBe(0)
  })
})

describe("host-local CHECK", () => {
  test("passes when the allocation matches prevResult, fails otherwise", async () => {
    const { call, fake } = setup()
    const add = await call("ADD", conf(dual))
    expect((await call("CHECK", conf(dual, { prevResult: add.json }))).exitCode).toBe(0)

    const wrong = { ...add.json, ips: [{ address: "10.0.0.9/24", gateway: "10.0.0.1" }, { address: "fd00::2/64" }] }
    const mismatch = await call("CHECK", conf(dual, { prevResult: wrong }))
    expect([mismatch.json?.code, mismatch.json?.msg]).toEqual([
      100,
      "host-local CHECK: 10.0.0.2 is allocated to c1/eth0 but missing from prevResult"
    ])

    fake.state.dirs.get(`${DATA}/net`)!.delete("fd00::2")
    const gone = await call("CHECK", conf(dual, { prevResult: add.json }))
    expect(gone.json?.msg).toBe("host-local CHECK: c1/eth0 holds 0 addresses in range set ipam.ranges[1], expected 1")

    const other = await call("CHECK", conf(dual, { prevResult: add.json }), { CNI_CONTAINERID: "nobody" })
    expect(other.json?.msg).toBe("host-local CHECK: no address is allocated to nobody/eth0 in network net")
  })
})

describe("host-local GC", () => {
  test("releases what no valid attachment names, keeps the rest", async () => {
    const { call, allocations } = setup()
    for (const id of ["a", "b", "c"]) await call("ADD", conf(slash29), { CNI_CONTAINERID: id })
    const gc = await call("GC", conf(slash29, {
      "cni.dev/valid-attachments": [{ containerID: "b", ifname: "eth0" }, { containerID: "a", ifname: "eth9" }]
    }))
    expect(gc.exitCode).toBe(0)
    expect(allocations()).toEqual({ "10.0.0.3": "b\r\neth0" })
  })

  test("the older cni.dev/attachments key works; a GC without a list releases nothing", async () => {
    const { call, allocations } = setup()
    for (const id of ["a", "b"]) await call("ADD", conf(slash29), { CNI_CONTAINERID: id })
    await call("GC", conf(slash29))
    expect(Object.keys(allocations()).length).toBe(2)
    await call("GC", conf(slash29, { "cni.dev/attachments": [{ containerID: "a", ifname: "eth0" }] }))
    expect(allocations()).toEqual({ "10.0.0.2": "a\r\neth0" })
  })

  test("GC needs cniVersion 1.1.0", async () => {
    const { call } = setup()
    const out = await call("GC", { ...conf(slash29), cniVersion: "1.0.0" })
    expect(out.json?.code).toBe(1)
  })
})

describe("host-local after a reboot", () => {
  test("ADD releases the previous boot's allocations and round-robin positions first", async () => {
    const { call, fake, allocations } = setup()
    for (const id of ["a", "b", "c"]) await call("ADD", conf(slash29), { CNI_CONTAINERID: id })
    fake.state.bootId = "boot-2"
    const add = await call("ADD", conf(slash29), { CNI_CONTAINERID: "d" })
    // a fresh start: the first address, not the one after c's
    expect(addressesOf(add.json)).toEqual(["10.0.0.2/29"])
    expect(allocations()).toEqual({ "10.0.0.2": "d\r\neth0" })
    expect(fake.files(DATA, "net").get("boot_id")).toBe("boot-2\n")
  })

  test("GC reclaims too; a store without boot_id is adopted, not wiped", async () => {
    const { call, fake, allocations } = setup()
    for (const id of ["a", "b"]) await call("ADD", conf(slash29), { CNI_CONTAINERID: id })
    fake.state.dirs.get(`${DATA}/net`)!.delete("boot_id")
    fake.state.bootId = "boot-2"
    await call("ADD", conf(slash29), { CNI_CONTAINERID: "c" })
    expect(Object.keys(allocations()).length).toBe(3)
    fake.state.bootId = "boot-3"
    await call("GC", conf(slash29, { "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }] }))
    expect(allocations()).toEqual({})
  })

  test("without a known boot id nothing is reclaimed", async () => {
    const { call, fake, allocations } = setup()
    await call("ADD", conf(slash29), { CNI_CONTAINERID: "a" })
    fake.state.bootId = undefined
    await call("ADD", conf(slash29), { CNI_CONTAINERID: "b" })
    expect(Object.keys(allocations()).length).toBe(2)
  })
})

describe("host-local STATUS", () => {
  test("ready while every set has a free address; code 50 naming the set when one is full", async () => {
    const { call } = setup()
    const ipam = { ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.1.0.0/30" }]] }
    expect((await call("STATUS", conf(ipam))).exitCode).toBe(0)
    await call("ADD", conf(ipam))
    const full = await call("STATUS", conf(ipam))
    expect([full.json?.code, full.json?.msg]).toEqual([
      50,
      "host-local: no free addresses in range set ipam.ranges[1] (10.1.0.1-10.1.0.2)"
    ])
  })

  test("a previous boot's allocations count as free", async () => {
    const { call, fake } = setup()
    const ipam = { ranges: [[{ subnet: "10.1.0.0/30" }]] }
    await call("ADD", conf(ipam))
    fake.state.bootId = "boot-2"
    expect((await call("STATUS", conf(ipam))).exitCode).toBe(0)
  })

  test("an unwritable store is code 50", async () => {
    const { call, fake } = setup()
    fake.state.readOnly.add(`${DATA}/net`)
    const out = await call("STATUS", conf(slash29))
    expect([out.json?.code, String(out.json?.msg).includes("cannot write the store")]).toEqual([50, true])
  })

  test("on disk: a dataDir under a file cannot be created", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tscni-status-"))
    writeFileSync(join(dir, "file"), "")
    const out = await invoke(hostLocalPlugin, diskStoreLayer, cniEnv("STATUS"), conf({ ...slash29, dataDir: join(dir, "file", "sub") }))
    const ok = await invoke(hostLocalPlugin, diskStoreLayer, cniEnv("STATUS"), conf({ ...slash29, dataDir: join(dir, "new", "sub") }))
    rmSync(dir, { recursive: true, force: true })
    expect([out.json?.code, ok.exitCode]).toEqual([50, 0])
  })
})

describe("host-local on disk, in one process", () => {
  const root = mkdtempSync(join(tmpdir(), "tscni-hl-disk-"))
  afterAll(() => rmSync(root, { recursive: true, force: true }))

  test("30 concurrent ADDs get distinct addresses; 30 concurrent DELs leave only the bookkeeping", async () => {
    const config = conf({ ranges: [[{ subnet: "10.5.0.0/24" }]], dataDir: root })
    const ids = Array.from({ length: 30 }, (_, i) => `ctr${i}`)
    const adds = await Promise.all(ids.map((id) => invoke(hostLocalPlugin, diskStoreLayer, cniEnv("ADD", { CNI_CONTAINERID: id }), config)))
    expect(adds.every((add) => add.exitCode === 0)).toBe(true)
    const addresses = adds.flatMap((add) => addressesOf(add.json))
    expect(new Set(addresses).size).toBe(30)
    await Promise.all(ids.map((id) => invoke(hostLocalPlugin, diskStoreLayer, cniEnv("DEL", { CNI_CONTAINERID: id }), config)))
    expect(readdirSync(join(root, "net")).filter((name) => /^\d/.test(name))).toEqual([])
  })
})

describe("host-local's owner index: ADD and DEL cost the same with 5 attachments or 200", () => {
  /** A fake store whose file reads and listings are counted. */
  const counted = () => {
    const counts = { reads: 0, listings: 0 }
    const fake = memoryStore(undefined, (files) => ({
      ...files,
      read: (name) => Effect.suspend(() => {
        counts.reads++
        return files.read(name)
      }),
      names: Effect.suspend(() => {
        counts.listings++
        return files.names
      })
    }))
    const call = (command: string, config: unknown, extra: Record<string, string> = {}) => invoke(hostLocalPlugin, fake.layer, cniEnv(command, extra), config)
    return { fake, call, counts }
  }
  const slash24 = { ranges: [[{ subnet: "10.0.0.0/24" }]] }

  test("with 200 attachments, an ADD and a DEL read a few files each, the same as with 5", async () => {
    const reads = async (attachments: number) => {
      const { call, counts } = counted()
      for (let i = 0; i < attachments; i++) expect((await call("ADD", conf(slash24), { CNI_CONTAINERID: `bg-${i}` })).exitCode).toBe(0)
      counts.reads = 0
      const add = await call("ADD", conf(slash24), { CNI_CONTAINERID: "probe" })
      expect(add.exitCode).toBe(0)
      const addReads = counts.reads
      counts.reads = 0
      expect((await call("DEL", conf(slash24), { CNI_CONTAINERID: "probe" })).exitCode).toBe(0)
      return { add: addReads, del: counts.reads }
    }
    const few = await reads(5)
    const many = await reads(200)
    expect(many).toEqual(few)
    expect(many.add).toBeLessThan(10)
    expect(many.del).toBeLessThan(10)
  })

  test("allocations the reference wrote: new addresses avoid them, and their DEL finds them by reading every file", async () => {
    const { fake, call, counts } = counted()
    const dir = new Map<string, string>([["10.0.0.2", "r1\r\neth0"], ["10.0.0.3", "r2\r\neth0"], ["last_reserved_ip.0", "10.0.0.2"], ["10.0.0.5", "old"]])
    fake.state.dirs.set(`${DATA}/net`, dir)
    // .3 is taken (its file says so): the next free is .4
    expect(addressesOf((await call("ADD", conf(slash24))).json)).toEqual(["10.0.0.4/24"])
    expect([...dir.keys()].filter((name) => name.startsWith(".tscni-owner.")).length).toBe(1)
    counts.reads = 0
    // the same attachment again: its address, from its entry
    expect(addressesOf((await call("ADD", conf(slash24))).json)).toEqual(["10.0.0.4/24"])
    expect(counts.reads).toBeLessThan(10)
    // the reference's attachments (one of an old version, naming no ifname) have no entry: DEL reads every file
    expect((await call("DEL", conf(slash24), { CNI_CONTAINERID: "r1" })).exitCode).toBe(0)
    expect((await call("DEL", conf(slash24), { CNI_CONTAINERID: "old" })).exitCode).toBe(0)
    expect([dir.has("10.0.0.2"), dir.has("10.0.0.5"), dir.has("10.0.0.3")]).toEqual([false, false, true])
    expect((await call("DEL", conf(slash24))).exitCode).toBe(0)
    expect([...dir.keys()].filter((name) => name.startsWith(".tscni-owner."))).toEqual([])
  })

  test("an entry is a hint: an address someone else now holds is not released; an attachment with no entry is still found", async () => {
    const { fake, call } = counted()
    expect(addressesOf((await call("ADD", conf(slash24))).json)).toEqual(["10.0.0.2/24"])
    const dir = fake.state.dirs.get(`${DATA}/net`)!
    // the reference released c1's address and gave it to r9 (it keeps no index)
    dir.set("10.0.0.2", "r9\r\neth0")
    // and allocated for r8 after the directory was indexed
    dir.set("10.0.0.7", "r8\r\neth0")
    expect((await call("DEL", conf(slash24))).exitCode).toBe(0)
    expect(dir.get("10.0.0.2")).toBe("r9\r\neth0")
    expect((await call("DEL", conf(slash24), { CNI_CONTAINERID: "r8" })).exitCode).toBe(0)
    expect(dir.has("10.0.0.7")).toBe(false)
  })

  test("GC drops the entries of attachments another plugin released, and keeps the rest", async () => {
    const { fake, call } = counted()
    for (const id of ["a", "b"]) expect((await call("ADD", conf(slash24), { CNI_CONTAINERID: id })).exitCode).toBe(0)
    const dir = fake.state.dirs.get(`${DATA}/net`)!
    // the reference's DEL of a: its address file goes, tscni's entry stays
    dir.delete("10.0.0.2")
    const entries = () => [...dir.keys()].filter((name) => name.startsWith(".tscni-owner.")).length
    expect(entries()).toBe(2)
    const gc = await call("GC", { ...conf(slash24), "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }, { containerID: "b", ifname: "eth0" }] })
    expect(gc.exitCode).toBe(0)
    expect(entries()).toBe(1)
    expect(dir.get("10.0.0.3")).toBe("b\r\neth0")
  })
})
