/**
 * The compiled host-local binary run as a runtime runs it (env + stdin), against a
 * temporary dataDir. The store is observed with plain file reads and util-linux `flock`,
 * never through tscni's own store code.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { binary, execPlugin, type PluginRun } from "./harness.ts"

const VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
const root = mkdtempSync(join(tmpdir(), "tscni-it-host-local-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let dirs = 0
/** A fresh, empty dataDir for one test. */
const freshDataDir = (): string => join(root, `data${dirs++}`)

const conf = (
  cniVersion: string,
  dataDir: string,
  ipam: Record<string, unknown> = {},
  extra: Record<string, unknown> = {}
): string =>
  JSON.stringify({
    cniVersion,
    name: "itnet",
    type: "host-local",
    ipam: { type: "host-local", dataDir, ranges: [[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd77::/64" }]], ...ipam },
    ...extra
  })

const env = (command: string, containerId = "ctr-1", ifname = "eth0"): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: containerId,
  CNI_NETNS: "/var/run/netns/tscni-it-unused",
  CNI_IFNAME: ifname,
  CNI_PATH: "/opt/cni/bin"
})

/** Allocation files (named by an address) and their contents, read straight from disk. */
const allocationFiles = (dataDir: string): Record<string, string> => {
  const dir = join(dataDir, "itnet")
  if (!existsSync(dir)) return {}
  const out: Record<string, string> = {}
  for (const name of readdirSync(dir)) if (/^[0-9a-f.:]+$/.test(name) && name.match(/[.:]/)) out[name] = readFileSync(join(dir, name), "utf8")
  return out
}

/** Like execPlugin, but asynchronous, so many can run at once. */
const spawnPlugin = async (path: string, environment: Record<string, string>, stdin: string): Promise<PluginRun> => {
  const proc = Bun.spawn([path], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...environment },
    stdin: new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe"
  })
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited
  ])
  return { exitCode, stdout, stderr, json: stdout.trim() === "" ? undefined : (JSON.parse(stdout) as Record<string, unknown>) }
}

const ipsOf = (run: PluginRun) => (run.json?.ips ?? []) as Array<Record<string, unknown>>

for (const entry of [{ label: "host-local binary", path: () => binary("host-local") }, {
  label: "multicall binary linked as host-local",
  path: () => {
    const link = join(root, "host-local")
    symlinkSync(binary("tscni"), link)
    return link
  }
}]) {
  describe(entry.label, () => {
    const plugin = entry.path()

    test("VERSION", () => {
      const out = execPlugin(plugin, { CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: "1.0.0" }))
      expect(out.json?.supportedVersions).toEqual(["0.3.0", ...VERSIONS])
    })

    for (const version of VERSIONS) {
      test(`ADD, CHECK, DEL with cniVersion ${version}`, () => {
        const dataDir = freshDataDir()
        const add = execPlugin(plugin, env("ADD"), conf(version, dataDir, { routes: [{ dst: "0.0.0.0/0" }] }))
        expect([add.exitCode, add.stderr]).toEqual([0, ""])
        const expectedIps = [
          { address: "10.77.0.2/24", gateway: "10.77.0.1" },
          { address: "fd77::2/64", gateway: "fd77::1" }
        ].map((ip, i) => (version < "1.0.0" ? { version: i === 0 ? "4" : "6", ...ip } : ip))
        expect(add.json).toEqual({ cniVersion: version, ips: expectedIps, routes: [{ dst: "0.0.0.0/0" }] })
        expect(allocationFiles(dataDir)).toEqual({ "10.77.0.2": "ctr-1\r\neth0", "fd77::2": "ctr-1\r\neth0" })

        if (version !== "0.3.1") {
          const check = execPlugin(plugin, env("CHECK"), conf(version, dataDir, {}, { prevResult: add.json }))
          expect([check.exitCode, check.stdout]).toEqual([0, ""])
          const other = execPlugin(plugin, env("CHECK", "ctr-2"), conf(version, dataDir, {}, { prevResult: add.json }))
          expect([other.exitCode, other.json?.code]).toEqual([1, 100])
        } else {
          const check = execPlugin(plugin, env("CHECK"), conf(version, dataDir, {}, { prevResult: add.json }))
          expect(check.json?.code).toBe(1)
        }

        const del = execPlugin(plugin, env("DEL"), conf(version, dataDir, {}, { prevResult: add.json }))
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
        expect(allocationFiles(dataDir)).toEqual({})
        expect(execPlugin(plugin, env("DEL"), conf(version, dataDir)).exitCode).toBe(0)
      })
    }

    test("GC and STATUS need 1.1.0; GC releases what is not valid; STATUS reports exhaustion", () => {
      const dataDir = freshDataDir()
      const ipam = { ranges: [[{ subnet: "10.78.0.0/29" }]] }
      for (const old of ["0.4.0", "1.0.0"]) {
        expect(execPlugin(plugin, env("GC"), conf(old, dataDir, ipam)).json?.code).toBe(1)
        expect(execPlugin(plugin, env("STATUS"), conf(old, dataDir, ipam)).json?.code).toBe(1)
      }
      for (const id of ["a", "b", "c", "d", "e"]) expect(execPlugin(plugin, env("ADD", id), conf("1.1.0", dataDir, ipam)).exitCode).toBe(0)
      const full = execPlugin(plugin, { CNI_COMMAND: "STATUS" }, conf("1.1.0", dataDir, ipam))
      expect([full.exitCode, full.json?.code, full.json?.msg]).toEqual([
        1,
        50,
        "host-local: no free addresses in range set ipam.ranges[0] (10.78.0.1-10.78.0.6)"
      ])
      const gc = execPlugin(plugin, { CNI_COMMAND: "GC" }, conf("1.1.0", dataDir, ipam, {
        "cni.dev/valid-attachments": [{ containerID: "b", ifname: "eth0" }, { containerID: "d", ifname: "eth0" }]
      }))
      expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
      expect(allocationFiles(dataDir)).toEqual({ "10.78.0.3": "b\r\neth0", "10.78.0.5": "d\r\neth0" })
      const ready = execPlugin(plugin, { CNI_COMMAND: "STATUS" }, conf("1.1.0", dataDir, ipam))
      expect([ready.exitCode, ready.stdout]).toEqual([0, ""])
    })
  })
}

describe("host-local under concurrency and in edge cases", () => {
  const plugin = binary("host-local")

  test("40 parallel ADDs get 40 distinct addresses; 40 parallel DELs leave no allocation", async () => {
    const dataDir = freshDataDir()
    const ipam = { ranges: [[{ subnet: "10.79.0.0/24" }]] }
    const ids = Array.from({ length: 40 }, (_, i) => `par-${i}`)
    const adds = await Promise.all(ids.map((id) => spawnPlugin(plugin, env("ADD", id), conf("1.0.0", dataDir, ipam))))
    for (const add of adds) expect([add.exitCode, add.stderr]).toEqual([0, ""])
    const addresses = adds.map((add) => String(ipsOf(add)[0]?.address))
    expect(new Set(addresses).size).toBe(40)
    const files = allocationFiles(dataDir)
    expect(Object.keys(files).length).toBe(40)
    // each file names the container that got that address
    for (const [i, add] of adds.entries()) {
      const address = String(ipsOf(add)[0]?.address).split("/")[0]!
      expect(files[address]).toBe(`${ids[i]}\r\neth0`)
    }
    const dels = await Promise.all(ids.map((id) => spawnPlugin(plugin, env("DEL", id), conf("1.0.0", dataDir, ipam))))
    for (const del of dels) expect([del.exitCode, del.stdout]).toEqual([0, ""])
    expect(allocationFiles(dataDir)).toEqual({})
  })

  test("a /30 hands out one address, then fails with code 100 naming the range", () => {
    const dataDir = freshDataDir()
    const ipam = { ranges: [[{ subnet: "10.80.0.0/30" }]] }
    const first = execPlugin(plugin, env("ADD", "one"), conf("1.0.0", dataDir, ipam))
    expect((first.json?.ips as Array<{ address: string }>)[0]?.address).toBe("10.80.0.2/30")
    const second = execPlugin(plugin, env("ADD", "two"), conf("1.0.0", dataDir, ipam))
    expect([second.exitCode, second.json?.code, second.json?.msg]).toEqual([
      1,
      100,
      "no IP addresses available in range set ipam.ranges[0]: 10.80.0.1-10.80.0.2"
    ])
    expect(Object.keys(allocationFiles(dataDir))).toEqual(["10.80.0.2"])
  })

  test("bad configs are code 7 and create nothing in the dataDir", () => {
    const dataDir = freshDataDir()
    const cases: Array<[string, string]> = [
      [conf("1.0.0", dataDir, { ranges: [[{ subnet: "10.0.0.0/24" }, { subnet: "bad" }]] }), "ipam.ranges[0][1].subnet: not a CIDR"],
      [conf("1.0.0", dataDir, { ranges: [[{ subnet: "10.0.0.0/24", rangeStart: "10.1.0.1" }]] }), "ipam.ranges[0][0].rangeStart:"],
      [conf("1.0.0", dataDir, { ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.0.0.0/16" }]] }), "ipam.ranges[1][0]:"],
      [conf("1.0.0", dataDir, { ranges: [[{ subnet: "10.0.0.0/24", gateway: "10.9.9.9" }]] }), "ipam.ranges[0][0].gateway:"],
      [conf("1.0.0", dataDir, {}, { runtimeConfig: { ips: ["192.168.1.1"] } }), "runtimeConfig.ips[0]:"],
      [JSON.stringify({ cniVersion: "1.0.0", name: "itnet", type: "host-local" }), "ipam: missing"]
    ]
    for (const [stdin, message] of cases) {
      const out = execPlugin(plugin, env("ADD"), stdin)
      expect([out.exitCode, out.json?.code, String(out.json?.msg).slice(0, message.length)]).toEqual([1, 7, message])
    }
    expect(existsSync(dataDir)).toBe(false)
  })

  test("a requested address that is taken is an error naming it", () => {
    const dataDir = freshDataDir()
    const wanted = conf("1.0.0", dataDir, {}, { runtimeConfig: { ips: ["10.77.0.42/24"] } })
    expect((execPlugin(plugin, env("ADD", "a"), wanted).json?.ips as Array<{ address: string }>)[0]?.address).toBe("10.77.0.42/24")
    const taken = execPlugin(plugin, { ...env("ADD", "b"), CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.77.0.42" }, conf("1.0.0", dataDir))
    expect([taken.json?.code, taken.json?.msg]).toEqual([100, "requested IP address 10.77.0.42 is already allocated to a/eth0"])
  })

  test("allocations of a previous boot are released by the next ADD", () => {
    const dataDir = freshDataDir()
    for (const id of ["a", "b"]) execPlugin(plugin, env("ADD", id), conf("1.0.0", dataDir))
    const bootIdFile = join(dataDir, "itnet", "boot_id")
    expect(readFileSync(bootIdFile, "utf8").trim()).toBe(readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim())
    writeFileSync(bootIdFile, "00000000-0000-0000-0000-000000000000\n")
    const add = execPlugin(plugin, env("ADD", "c"), conf("1.0.0", dataDir))
    expect(ipsOf(add).map((ip) => ip.address)).toEqual(["10.77.0.2/24", "fd77::2/64"])
    expect(allocationFiles(dataDir)).toEqual({ "10.77.0.2": "c\r\neth0", "fd77::2": "c\r\neth0" })
  })

  test("waits for the store lock held by another process (util-linux flock, as the reference takes it), and reads the store only once it has it", async () => {
    const dataDir = freshDataDir()
    expect(execPlugin(plugin, env("ADD", "a"), conf("1.0.0", dataDir)).exitCode).toBe(0)
    const lock = join(dataDir, "itnet", "lock")
    /** Waits for a condition (paced, with a generous deadline): never for a time. */
    const until = async (what: string, ok: () => boolean) => {
      for (const deadline = Date.now() + 20_000; !ok(); await Bun.sleep(5)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
      }
    }
    /** Whether a process holds `path` open (its /proc/<pid>/fd links), as a lock taker does while it waits. */
    const holdsOpen = (pid: number, path: string): boolean => {
      try {
        return readdirSync(`/proc/${pid}/fd`).some((fd) => {
          try {
            return readlinkSync(`/proc/${pid}/fd/${fd}`) === path
          } catch {
            return false
          }
        })
      } catch {
        return false
      }
    }
    // util-linux flock holds the lock until the test closes cat's stdin (the lock stays with
    // flock's child, so it is released by ending cat, not by killing flock)
    const holder = Bun.spawn(["flock", lock, "cat"], { stdin: "pipe", stdout: "ignore" })
    let adding: Promise<[string, number]> | undefined
    try {
      await until("the holder has the lock", () => Bun.spawnSync(["flock", "-n", lock, "true"]).exitCode !== 0)
      const proc = Bun.spawn([plugin], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env("ADD", "b") },
        stdin: new TextEncoder().encode(conf("1.0.0", dataDir)),
        stdout: "pipe",
        stderr: "ignore"
      })
      adding = Promise.all([new Response(proc.stdout).text(), proc.exited])
      // the ADD has reached the lock (it has the lock file open), and is held there: not
      // finished, nothing allocated
      await until("the ADD opened the lock file, or ended", () => proc.exitCode !== null || holdsOpen(proc.pid, lock))
      expect({ exited: proc.exitCode, allocations: allocationFiles(dataDir) }).toEqual({
        exited: null,
        allocations: { "10.77.0.2": "a\r\neth0", "fd77::2": "a\r\neth0" }
      })
      // what the holder does under the lock, the ADD must see once it has it: the holder takes
      // 10.77.0.3, the address the ADD would get next
      writeFileSync(join(dataDir, "itnet", "10.77.0.3"), "holder\r\neth0", { flag: "wx" })
    } finally {
      void holder.stdin.end()
      await holder.exited
    }
    const [stdout, exitCode] = await adding!
    expect(exitCode).toBe(0)
    expect((JSON.parse(stdout).ips as Array<{ address: string }>).map((ip) => ip.address)).toEqual(["10.77.0.4/24", "fd77::3/64"])
    expect(allocationFiles(dataDir)).toEqual({ "10.77.0.2": "a\r\neth0", "fd77::2": "a\r\neth0", "10.77.0.3": "holder\r\neth0", "10.77.0.4": "b\r\neth0", "fd77::3": "b\r\neth0" })
  })
})
