/** The compiled static binary run as a runtime runs it (env + stdin). */
import { describe, expect, test } from "bun:test"
import { binary, execPlugin } from "./harness.ts"

const VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]

const ipam = {
  type: "static",
  addresses: [{ address: "10.88.0.5/24", gateway: "10.88.0.1" }, { address: "fd88::5/64", gateway: "fd88::1" }],
  routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
  dns: { nameservers: ["10.88.0.53"], search: ["example.org"] }
}

const conf = (cniVersion: string, extra: Record<string, unknown> = {}, section: Record<string, unknown> = ipam) =>
  JSON.stringify({ cniVersion, name: "itstatic", type: "static", ipam: section, ...extra })

const env = (command: string, extra: Record<string, string> = {}): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: "ctr-1",
  CNI_NETNS: "/var/run/netns/tscni-it-unused",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
  ...extra
})

describe("static binary", () => {
  const plugin = binary("static")

  test("VERSION", () => {
    const out = execPlugin(plugin, { CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: "1.0.0" }))
    expect(out.json?.supportedVersions).toEqual(["0.3.0", ...VERSIONS])
  })

  for (const version of VERSIONS) {
    test(`ADD, CHECK, DEL with cniVersion ${version}`, () => {
      const add = execPlugin(plugin, env("ADD"), conf(version))
      expect([add.exitCode, add.stderr]).toEqual([0, ""])
      const ips = [
        { address: "10.88.0.5/24", gateway: "10.88.0.1" },
        { address: "fd88::5/64", gateway: "fd88::1" }
      ].map((ip, i) => (version < "1.0.0" ? { version: i === 0 ? "4" : "6", ...ip } : ip))
      expect(add.json).toEqual({
        cniVersion: version,
        ips,
        routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
        dns: { nameservers: ["10.88.0.53"], search: ["example.org"] }
      })
      const check = execPlugin(plugin, env("CHECK"), conf(version, { prevResult: add.json }))
      if (version === "0.3.1") {
        expect(check.json?.code).toBe(1)
      } else {
        expect([check.exitCode, check.stdout]).toEqual([0, ""])
        const other = { ...add.json, ips: [ips[1]] }
        const broken = execPlugin(plugin, env("CHECK"), conf(version, { prevResult: other }))
        expect([broken.exitCode, broken.json?.code]).toEqual([1, 100])
        expect(String(broken.json?.msg)).toContain("10.88.0.5/24")
      }
      const del = execPlugin(plugin, env("DEL"), conf(version, { prevResult: add.json }))
      expect([del.exitCode, del.stdout]).toEqual([0, ""])
    })
  }

  test("GC and STATUS succeed with 1.1.0 and are refused before it", () => {
    for (const command of ["GC", "STATUS"]) {
      const ok = execPlugin(plugin, { CNI_COMMAND: command }, conf("1.1.0"))
      expect([command, ok.exitCode, ok.stdout]).toEqual([command, 0, ""])
      expect(execPlugin(plugin, { CNI_COMMAND: command }, conf("1.0.0")).json?.code).toBe(1)
    }
  })

  test("addresses from CNI_ARGS (IP, GATEWAY) and from runtimeConfig.ips", () => {
    const fromArgs = execPlugin(
      plugin,
      env("ADD", { CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.99.0.7/16;GATEWAY=10.99.0.1" }),
      conf("1.0.0", {}, { type: "static" })
    )
    expect(fromArgs.json?.ips).toEqual([{ address: "10.99.0.7/16", gateway: "10.99.0.1" }])
    const fromRuntime = execPlugin(plugin, env("ADD"), conf("1.0.0", { runtimeConfig: { ips: ["10.99.0.8/16"] } }))
    expect(fromRuntime.json?.ips).toEqual([{ address: "10.99.0.8/16" }])
  })

  test("bad configs are code 7 naming the field; a bad CNI_ARGS is code 4", () => {
    const cases: Array<[Record<string, string>, string, number, string]> = [
      [env("ADD"), conf("1.0.0", {}, { type: "static", addresses: [{ address: "10.0.0.1" }] }), 7, "ipam.addresses[0].address:"],
      [env("ADD"), conf("1.0.0", {}, { type: "static", routes: [{ dst: "x" }] }), 7, "ipam.routes[0].dst:"],
      [env("ADD"), conf("1.0.0", { runtimeConfig: { ips: ["nope"] } }), 7, "runtimeConfig.ips[0]:"],
      [env("ADD", { CNI_ARGS: "IP=10.0.0.1" }), conf("1.0.0"), 4, "CNI_ARGS: IP:"],
      [env("ADD", { CNI_ARGS: "K8S_POD_NAME=web" }), conf("1.0.0"), 4, "CNI_ARGS: unknown args"]
    ]
    for (const [environment, stdin, code, message] of cases) {
      const out = execPlugin(plugin, environment, stdin)
      expect([out.exitCode, out.json?.code, String(out.json?.msg).slice(0, message.length)]).toEqual([1, code, message])
    }
  })
})
