import { afterEach, describe, expect, test } from "bun:test"
import { existsSync } from "node:fs"
import { resolve } from "node:path"
import { makeSandbox, type Sandbox } from "./fakes.ts"

const MAIN = resolve(import.meta.dir, "..", "src", "main.ts")

let box: Sandbox
afterEach(() => box?.remove())

const cni = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const proc = Bun.spawnSync([process.execPath, MAIN, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdout: "pipe",
    stderr: "pipe"
  })
  return { exitCode: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() }
}

const setup = () => {
  box = makeSandbox()
  const result = { cniVersion: "1.0.0", interfaces: [{ name: "cni0", mac: "aa:bb:cc:dd:ee:01" }, { name: "eth0", mac: "aa:bb:cc:dd:ee:02", sandbox: "/var/run/netns/tscni-pod" }], ips: [{ address: "10.5.0.2/24", gateway: "10.5.0.1", interface: 1 }] }
  box.plugin("main", { result })
  box.plugin("shaper", { result })
  box.plugin("broken", { failOn: "ADD", error: { code: 7, msg: "bad config", details: "field x" } })
  box.conf("10-net.conflist", {
    cniVersion: "1.0.0",
    name: "net",
    plugins: [{ type: "main" }, { type: "shaper", capabilities: { bandwidth: true, "io.kubernetes.cri.pod-annotations": true } }]
  })
  box.conf("20-bad.conflist", { cniVersion: "1.0.0", name: "bad", plugins: [{ type: "broken" }] })
  return ["--conf-dir", box.confDir, "--cache-dir", box.cacheDir]
}

describe("cni CLI", () => {
  test("--help lists the subcommands; a usage error exits 2", () => {
    const help = cni(["--help"])
    expect(help.exitCode).toBe(0)
    for (const sub of ["add", "check", "del", "gc", "status", "netns"]) expect(help.stdout).toContain(sub)
    expect(cni(["add", "--help"]).stdout).toContain("--annotation")
    const usage = cni(["add", "net"])
    expect(usage.exitCode).toBe(2)
    expect(usage.stderr).toContain("netns")
  })

  test("add: tables by default, container ID from the netns name, CNI_PATH as bin dir, annotations as bandwidth", () => {
    const flags = setup()
    const out = cni(["add", "net", "tscni-pod", ...flags, "--annotation", "kubernetes.io/egress-bandwidth=10M", "--args", "A=1"], { CNI_PATH: box.binDir })
    expect(out.stderr).toMatch(/main ADD… ok \(\d+ ms\)\nshaper ADD… ok \(\d+ ms\)/)
    expect(out.exitCode).toBe(0)
    expect(out.stdout).toContain("INTERFACE  MAC                SANDBOX")
    expect(out.stdout).toMatch(/eth0\s+aa:bb:cc:dd:ee:02\s+\/var\/run\/netns\/tscni-pod/)
    expect(out.stdout).toMatch(/10\.5\.0\.2\/24\s+10\.5\.0\.1\s+eth0/)
    const [first, second] = box.log()
    expect(first).toMatchObject({ containerId: "tscni-pod", netns: "/var/run/netns/tscni-pod", ifname: "eth0", args: "A=1", path: box.binDir })
    expect(second?.stdin.runtimeConfig).toEqual({
      bandwidth: { egressRate: 10_000_000, egressBurst: 4294967295 },
      "io.kubernetes.cri.pod-annotations": { "kubernetes.io/egress-bandwidth": "10M" }
    })
    expect(existsSync(`${box.cacheDir}/net-tscni-pod-eth0`)).toBe(true)
  })

  test("--json prints the final result; check and del use the cache", () => {
    const flags = [...setup(), "--bin-dir", box.binDir]
    const add = cni(["add", "net", "/var/run/netns/tscni-pod", "--container-id", "abc", "--ifname", "net1", "--json", ...flags])
    expect(add.exitCode).toBe(0)
    expect(JSON.parse(add.stdout)).toMatchObject({ cniVersion: "1.0.0", interfaces: [{ name: "cni0" }, { name: "eth0" }] })
    const check = cni(["check", "net", "tscni-pod", "--container-id", "abc", "--ifname", "net1", ...flags])
    expect(check.exitCode).toBe(0)
    expect(check.stdout).toContain("abc/net1 in network net: ok")
    const del = cni(["del", "net", "tscni-pod", "--container-id", "abc", "--ifname", "net1", ...flags])
    expect(del.exitCode).toBe(0)
    expect(existsSync(`${box.cacheDir}/net-abc-net1`)).toBe(false)
    expect(box.log().map((c) => `${c.plugin} ${c.command}`)).toEqual(["main ADD", "shaper ADD", "main CHECK", "shaper CHECK", "shaper DEL", "main DEL"])
  })

  test("a plugin's CNI error goes to stderr with code, msg and details; exit 1", () => {
    const flags = [...setup(), "--bin-dir", box.binDir]
    const out = cni(["add", "bad", "tscni-pod", ...flags])
    expect(out.exitCode).toBe(1)
    expect(out.stdout).toBe("")
    expect(out.stderr).toContain("cni: plugin broken failed (ADD): [code 7] bad config")
    expect(out.stderr).toContain("  field x")
    const json = cni(["add", "bad", "tscni-pod", "--json", ...flags])
    expect(JSON.parse(json.stderr)).toEqual({ plugin: "broken", verb: "ADD", code: 7, msg: "bad config", details: "field x" })
    const invalid = cni(["add", "net", "tscni-pod", "--container-id", "../x", ...flags])
    expect(invalid.exitCode).toBe(1)
    expect(invalid.stderr).toContain("invalid container ID")
  })

  test("gc and status from the command line", () => {
    const flags = [...setup(), "--bin-dir", box.binDir]
    box.conf("10-net.conflist", { cniVersion: "1.1.0", name: "net", plugins: [{ type: "main" }] })
    expect(cni(["add", "net", "tscni-gone-1", ...flags]).exitCode).toBe(0)
    const gc = cni(["gc", "net", "--valid", "other:eth0", ...flags])
    expect(gc.exitCode).toBe(0)
    expect(gc.stdout).toContain("deleted stale attachment tscni-gone-1/eth0")
    expect(existsSync(`${box.cacheDir}/net-tscni-gone-1-eth0`)).toBe(false)
    const status = cni(["status", "net", ...flags])
    expect(status.stdout).toContain("network net: ready")
    expect(cni(["gc", "net", "--valid", "nocolon", ...flags]).exitCode).toBe(1)
  })
})
