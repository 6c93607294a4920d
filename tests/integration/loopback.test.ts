import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { binary, execPlugin, freshNetns, ip, ipJson, kernelFaultSweep } from "./harness.ts"
import { observe } from "./hostns.ts"

const DRIVER = resolve(import.meta.dir, "fault-driver.ts")

const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

const conf = (cniVersion: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion, name: "lo-test", type: "loopback", ...extra })

const env = (command: string, netns: string) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: "it-container",
  CNI_NETNS: netns,
  CNI_IFNAME: "lo",
  CNI_PATH: "/opt/cni/bin"
})

interface IpLink {
  ifname: string
  flags: Array<string>
}
interface IpAddr {
  ifname: string
  addr_info: Array<{ family: string; local: string; prefixlen: number }>
}

const loState = (netns: string) => {
  const [link] = ipJson<Array<IpLink>>(netns, "link", "show", "lo")
  return { up: link!.flags.includes("UP"), flags: link!.flags }
}

const loAddresses = (netns: string): Array<string> => {
  const [entry] = ipJson<Array<IpAddr>>(netns, "addr", "show", "lo")
  return (entry?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`).sort()
}

for (const entry of [{ label: "loopback binary", path: () => binary("loopback") }, {
  label: "multicall binary linked as loopback",
  path: () => {
    const dir = mkdtempSync(join(tmpdir(), "tscni-mc-"))
    const link = join(dir, "loopback")
    symlinkSync(binary("tscni"), link)
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }))
    return link
  }
}]) {
  describe(entry.label, () => {
    const plugin = entry.path()

    test("VERSION lists the supported versions", () => {
      const out = execPlugin(plugin, { CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: "1.0.0" }))
      expect(out.exitCode).toBe(0)
      expect(out.json).toEqual({ cniVersion: "1.1.0", supportedVersions: VERSIONS })
    })

    for (const version of VERSIONS) {
      test(`ADD then DEL with cniVersion ${version}`, () => {
        const ns = freshNetns()
        expect(loState(ns.name).up).toBe(false)
        const add = execPlugin(plugin, env("ADD", ns.path), conf(version))
        expect(add.stderr).toBe("")
        expect(add.exitCode).toBe(0)
        expect(loState(ns.name).up).toBe(true)
        const result = add.json!
        expect(result.cniVersion).toBe(version)
        expect(result.interfaces).toEqual([{ name: "lo", mac: "00:00:00:00:00:00", sandbox: ns.path }])
        const ips = result.ips as Array<Record<string, unknown>>
        // the result names exactly the addresses iproute2 sees on lo
        expect(ips.map((i) => i.address).sort()).toEqual(loAddresses(ns.name))
        for (const item of ips) {
          expect(item.interface).toBe(0)
          const family = String(item.address).includes(":") ? "6" : "4"
          if (version < "1.0.0") expect(item.version).toBe(family)
          else expect(item.version).toBeUndefined()
        }
        const del = execPlugin(plugin, env("DEL", ns.path), conf(version, { prevResult: result }))
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
        // back to what a new namespace has: lo down, no addresses
        expect(loState(ns.name).up).toBe(false)
        expect(loAddresses(ns.name)).toEqual([])
        ns.remove()
      })
    }

    test("CHECK passes after ADD and fails when lo was taken down by hand", () => {
      const ns = freshNetns()
      const add = execPlugin(plugin, env("ADD", ns.path), conf("1.0.0"))
      expect(add.exitCode).toBe(0)
      const check = execPlugin(plugin, env("CHECK", ns.path), conf("1.0.0", { prevResult: add.json }))
      expect([check.exitCode, check.stdout]).toEqual([0, ""])
      Bun.spawnSync(["ip", "-n", ns.name, "link", "set", "lo", "down"])
      const broken = execPlugin(plugin, env("CHECK", ns.path), conf("1.0.0", { prevResult: add.json }))
      expect(broken.exitCode).not.toBe(0)
      expect(String(broken.json?.msg)).toContain("down")
      ns.remove()
    })

    test("DEL is idempotent and succeeds without a namespace", () => {
      const ns = freshNetns()
      expect(execPlugin(plugin, env("ADD", ns.path), conf("1.1.0")).exitCode).toBe(0)
      expect(execPlugin(plugin, env("DEL", ns.path), conf("1.1.0")).exitCode).toBe(0)
      expect(execPlugin(plugin, env("DEL", ns.path), conf("1.1.0")).exitCode).toBe(0)
      ns.remove()
      const gone = execPlugin(plugin, env("DEL", ns.path), conf("1.1.0"))
      expect([gone.exitCode, gone.stdout]).toEqual([0, ""])
      const empty = execPlugin(plugin, env("DEL", ""), conf("1.1.0"))
      expect([empty.exitCode, empty.stdout]).toEqual([0, ""])
    })

    test("ADD in a namespace that does not exist is code 3 and only the error JSON", () => {
      const out = execPlugin(plugin, env("ADD", "/var/run/netns/tscni-it-does-not-exist"), conf("1.0.0"))
      expect(out.exitCode).toBe(1)
      expect(out.json?.code).toBe(3)
      expect(out.stdout.trim().split("\n")).toHaveLength(1)
    })

    test("ADD with a path that is not a network namespace is code 3", () => {
      const out = execPlugin(plugin, env("ADD", "/etc/hostname"), conf("1.0.0"))
      expect(out.json?.code).toBe(3)
      expect(String(out.json?.msg)).toContain("not a network namespace")
    })

    test("bad input changes nothing in the namespace", () => {
      const ns = freshNetns()
      const before = JSON.stringify(ipJson(ns.name, "addr"))
      const cases: Array<[Record<string, string>, string, number]> = [
        [env("ADD", ns.path), "{broken", 6],
        [env("ADD", ns.path), conf("0.2.0"), 1],
        [{ ...env("ADD", ns.path), CNI_IFNAME: "" }, conf("1.0.0"), 4],
        [{ ...env("ADD", ns.path), CNI_CONTAINERID: "" }, conf("1.0.0"), 4],
        [env("ADD", ns.path), JSON.stringify({ cniVersion: "1.0.0", type: "loopback" }), 7]
      ]
      for (const [environment, stdin, code] of cases) {
        const out = execPlugin(plugin, environment, stdin)
        expect([out.exitCode, out.json?.code]).toEqual([1, code])
      }
      expect(JSON.stringify(ipJson(ns.name, "addr"))).toBe(before)
      ns.remove()
    })

    test("a log file that cannot be written never fails the plugin", () => {
      const ns = freshNetns()
      const add = execPlugin(
        plugin,
        { ...env("ADD", ns.path), TSCNI_LOG: "debug", TSCNI_LOG_FILE: "/nonexistent-dir/tscni.log" },
        conf("1.0.0")
      )
      expect(add.exitCode).toBe(0)
      expect(add.stderr).toContain("step linkUp apply ok")
      const bad = execPlugin(plugin, { ...env("ADD", ns.path), TSCNI_LOG_FILE: "/nonexistent-dir/tscni.log" }, "{broken")
      expect(bad.json?.code).toBe(6)
      ns.remove()
    })

    test("a device that is not loopback is refused as CNI_IFNAME (code 4)", () => {
      const ns = freshNetns()
      Bun.spawnSync(["ip", "-n", ns.name, "link", "add", "notlo", "type", "veth", "peer", "name", "notlo-peer"])
      const out = execPlugin(plugin, { ...env("ADD", ns.path), CNI_IFNAME: "notlo" }, conf("1.0.0"))
      expect([out.exitCode, out.json?.code]).toEqual([1, 4])
      expect(String(out.json?.msg)).toContain("not a loopback")
      ns.remove()
    })

    test("GC and STATUS succeed silently on 1.1.0", () => {
      for (const command of ["GC", "STATUS"]) {
        const out = execPlugin(plugin, { CNI_COMMAND: command, CNI_PATH: "/opt/cni/bin" }, conf("1.1.0"))
        expect([out.exitCode, out.stdout]).toEqual([0, ""])
      }
    })

    test("as a chained plugin it returns prevResult unchanged", () => {
      const ns = freshNetns()
      const prevResult = {
        cniVersion: "1.0.0",
        interfaces: [{ name: "eth0", mac: "0a:00:00:00:00:01", sandbox: ns.path }],
        ips: [{ address: "10.99.0.2/24", gateway: "10.99.0.1", interface: 0 }]
      }
      const out = execPlugin(plugin, env("ADD", ns.path), conf("1.0.0", { prevResult }))
      expect(out.exitCode).toBe(0)
      expect(out.json).toEqual(prevResult)
      ns.remove()
    })
  })
}

describe("loopback: a fault at every kernel call of ADD", () => {
  // lo down (a new namespace, what runtimes give) and lo already up (someone brought it up
  // first): either way a failed ADD leaves lo, its addresses and routes as they were
  for (const start of ["down", "up"] as const) {
    test(`leaves the namespace as it was (lo ${start} before ADD)`, () => {
      const ns = freshNetns()
      if (start === "up") ip("-n", ns.name, "link", "set", "lo", "up")
      const before = observe(ns.name)
      const faults = kernelFaultSweep(
        (k) => execPlugin(["bun", DRIVER, "loopback", String(k)], env("ADD", ns.path), conf("1.1.0")),
        () => {
          // DEL takes lo down (what ADD found in a new namespace); put back this test's start
          expect(execPlugin(binary("loopback"), env("DEL", ns.path), conf("1.1.0")).exitCode).toBe(0)
          if (start === "up") ip("-n", ns.name, "link", "set", "lo", "up")
        },
        (k) => expect({ k, netns: observe(ns.name) }).toEqual({ k, netns: before })
      )
      expect(faults).toBeGreaterThan(1)
      ns.remove()
    }, 120_000)
  }
})
