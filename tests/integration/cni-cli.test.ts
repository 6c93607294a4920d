/**
 * The compiled `cni` runtime CLI against the compiled plugins, as root. Pod namespaces are
 * made with `cni netns create`; the chain runs inside a test namespace standing in for the
 * host (`ip netns exec`), since bridge changes the namespace its process runs in. State is
 * observed with iproute2 and by reading the cache files, never with tscni's own code.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN_DIR, binary, ipJson } from "./harness.ts"
import { freshHost, type TestHost } from "./hostns.ts"

const CNI = binary("cni")
binary("bridge")
binary("host-local")
binary("loopback")

type Json = Record<string, any>

const PATH = process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"
const pods = new Set<string>()
const cleanups: Array<() => void> = []

const removePods = () => {
  for (const name of pods) Bun.spawnSync(["ip", "netns", "delete", name], { stdout: "ignore", stderr: "ignore" })
  pods.clear()
}
afterAll(() => {
  removePods()
  for (const cleanup of cleanups.splice(0)) cleanup()
})
process.once("exit", removePods)

interface Run {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

const spawn = (argv: ReadonlyArray<string>): Run => {
  const proc = Bun.spawnSync([...argv], { env: { PATH }, stdout: "pipe", stderr: "pipe" })
  return { exitCode: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() }
}

/** `cni` on the real host (namespace commands, dry runs). */
const cni = (...args: ReadonlyArray<string>): Run => spawn([CNI, ...args])
/** `cni` inside the test host namespace (what changes "the host" lands there). */
const cniIn = (host: TestHost, ...args: ReadonlyArray<string>): Run => spawn(["ip", "netns", "exec", host.name, CNI, ...args])

let counter = 0
const podName = () => `tscni-cli-${process.pid}-${++counter}`

/** A pod namespace made by `cni netns create`, removed after the file on every path. */
const createPod = (): { name: string; path: string } => {
  const name = podName()
  pods.add(name)
  const out = cni("netns", "create", name)
  expect(out.stderr).toBe("")
  expect(out.exitCode).toBe(0)
  expect(out.stdout.trim()).toBe(`/var/run/netns/${name}`)
  return { name, path: `/var/run/netns/${name}` }
}

interface Setup {
  readonly host: TestHost
  readonly confDir: string
  readonly cacheDir: string
  readonly dataDir: string
  readonly flags: ReadonlyArray<string>
  readonly conflist: string
}

const setup = (): Setup => {
  const host = freshHost()
  const root = mkdtempSync(join(tmpdir(), "tscni-cli-it-"))
  cleanups.push(() => {
    host.remove()
    rmSync(root, { recursive: true, force: true })
  })
  const confDir = join(root, "net.d")
  const cacheDir = join(root, "results")
  const dataDir = join(root, "ipam")
  mkdirSync(confDir)
  const conflist = JSON.stringify(
    {
      cniVersion: "1.0.0",
      cniVersions: ["1.0.0", "1.1.0"],
      name: "podnet",
      plugins: [
        {
          type: "bridge",
          bridge: "cni-cli0",
          isGateway: true,
          ipMasq: true,
          ipam: { type: "host-local", ranges: [[{ subnet: "10.124.0.0/24" }]], routes: [{ dst: "0.0.0.0/0" }], dataDir }
        }
      ]
    },
    null,
    2
  )
  writeFileSync(join(confDir, "10-podnet.conflist"), conflist)
  // a single-plugin .conf: wrapped into a list as libcni does
  writeFileSync(join(confDir, "99-lo.conf"), JSON.stringify({ cniVersion: "1.0.0", name: "lo", type: "loopback" }))
  return { host, confDir, cacheDir, dataDir, conflist, flags: ["--conf-dir", confDir, "--bin-dir", BIN_DIR, "--cache-dir", cacheDir] }
}

const cacheFile = (s: Setup, pod: string, ifname = "eth0") => join(s.cacheDir, `podnet-${pod}-${ifname}`)
const links = (netns: string) => ipJson<Array<Json>>(netns, "link", "show").map((l) => l.ifname as string)
const hostLinks = () => JSON.stringify(JSON.parse(spawn(["ip", "-j", "link", "show"]).stdout).map((l: Json) => [l.ifname, l.flags, l.master]))

describe("cni CLI (compiled, real kernel)", () => {
  test("netns create/list/delete", () => {
    const pod = createPod()
    expect(cni("netns", "list").stdout.split("\n")).toContain(pod.name)
    expect(spawn(["ip", "netns", "list"]).stdout).toContain(pod.name)
    const del = cni("netns", "delete", pod.name)
    expect(del.exitCode).toBe(0)
    pods.delete(pod.name)
    expect(existsSync(pod.path)).toBe(false)
    const again = cni("netns", "delete", pod.name)
    expect(again.exitCode).toBe(1)
    expect(again.stderr).toContain("[code 3]")
  })

  test("add (table and --json), cache written, check, del, cache removed", () => {
    const s = setup()
    const pod = createPod()

    const lo = cniIn(s.host, "add", "lo", pod.name, "--ifname", "lo", ...s.flags)
    expect(lo.stderr).toBe("")
    expect(lo.exitCode).toBe(0)
    expect(lo.stdout).toMatch(/^lo\s+00:00:00:00:00:00\s+\/var\/run\/netns\//m)
    expect(ipJson<Array<Json>>(pod.name, "link", "show", "lo")[0]!.flags).toContain("UP")

    const add = cniIn(s.host, "add", "podnet", pod.name, ...s.flags)
    expect(add.stderr).toBe("")
    expect(add.exitCode).toBe(0)
    expect(add.stdout).toMatch(/^INTERFACE\s+MAC\s+SANDBOX$/m)
    expect(add.stdout).toMatch(new RegExp(`^eth0\\s+[0-9a-f:]{17}\\s+/var/run/netns/${pod.name}$`, "m"))
    expect(add.stdout).toMatch(/^10\.124\.0\.2\/24\s+10\.124\.0\.1\s+eth0$/m)
    const addrs = ipJson<Array<Json>>(pod.name, "addr", "show", "eth0")[0]!.addr_info.map((a: Json) => `${a.local}/${a.prefixlen}`)
    expect(addrs).toContain("10.124.0.2/24")
    expect(links(s.host.name)).toContain("cni-cli0")

    // libcni's cache entry
    const file = cacheFile(s, pod.name)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(statSync(s.cacheDir).mode & 0o777).toBe(0o700)
    const entry = JSON.parse(readFileSync(file, "utf8"))
    expect(entry).toMatchObject({ kind: "cniCacheV1", containerId: pod.name, ifName: "eth0", networkName: "podnet", netns: pod.path })
    expect(Buffer.from(entry.config, "base64").toString()).toBe(s.conflist)
    expect(entry.result.ips[0].address).toBe("10.124.0.2/24")
    // negotiated from cniVersions: every tscni plugin speaks 1.1.0
    expect(entry.result.cniVersion).toBe("1.1.0")

    const pod2 = createPod()
    const json = cniIn(s.host, "add", "podnet", pod2.name, "--json", ...s.flags)
    expect(json.exitCode).toBe(0)
    const result = JSON.parse(json.stdout)
    expect(result).toMatchObject({ cniVersion: "1.1.0", ips: [{ address: "10.124.0.3/24", gateway: "10.124.0.1" }] })

    const check = cniIn(s.host, "check", "podnet", pod.name, ...s.flags)
    expect(check.stderr).toBe("")
    expect(check.exitCode).toBe(0)
    // CHECK sees what someone broke by hand
    spawn(["ip", "-n", pod2.name, "addr", "flush", "dev", "eth0"])
    const broken = cniIn(s.host, "check", "podnet", pod2.name, ...s.flags)
    expect(broken.exitCode).toBe(1)
    expect(broken.stderr).toContain("cni: plugin bridge failed (CHECK)")

    for (const p of [pod, pod2]) {
      const del = cniIn(s.host, "del", "podnet", p.name, ...s.flags)
      expect(del.stderr).toBe("")
      expect(del.exitCode).toBe(0)
      expect(existsSync(cacheFile(s, p.name))).toBe(false)
      expect(links(p.name)).not.toContain("eth0")
    }
    expect(links(s.host.name).filter((l) => l.startsWith("veth"))).toEqual([])
    expect(readdirSync(join(s.dataDir, "podnet")).filter((f) => f.startsWith("10."))).toEqual([])
    expect(cniIn(s.host, "del", "lo", pod.name, "--ifname", "lo", ...s.flags).exitCode).toBe(0)
    // a second DEL is fine (no cache entry, tolerant plugins)
    expect(cniIn(s.host, "del", "podnet", pod.name, ...s.flags).exitCode).toBe(0)
  })

  test("gc deletes the attachment whose netns is gone, and keeps the others", () => {
    const s = setup()
    const keep = createPod()
    const gone = createPod()
    expect(cniIn(s.host, "add", "podnet", keep.name, ...s.flags).exitCode).toBe(0)
    expect(cniIn(s.host, "add", "podnet", gone.name, ...s.flags).exitCode).toBe(0)
    expect(readdirSync(join(s.dataDir, "podnet"))).toContain("10.124.0.3")
    expect(cni("netns", "delete", gone.name).exitCode).toBe(0)
    pods.delete(gone.name)

    const gc = cniIn(s.host, "gc", "podnet", ...s.flags)
    expect(gc.exitCode).toBe(0)
    expect(gc.stdout).toContain(`deleted stale attachment ${gone.name}/eth0`)
    expect(gc.stdout).toContain("1 kept")
    expect(existsSync(cacheFile(s, gone.name))).toBe(false)
    expect(existsSync(cacheFile(s, keep.name))).toBe(true)
    const left = readdirSync(join(s.dataDir, "podnet")).filter((f) => f.startsWith("10."))
    expect(left).toEqual(["10.124.0.2"])
    expect(cniIn(s.host, "check", "podnet", keep.name, ...s.flags).exitCode).toBe(0)
    expect(cniIn(s.host, "status", "podnet", ...s.flags).stdout).toContain("network podnet: ready")
    expect(cniIn(s.host, "del", "podnet", keep.name, ...s.flags).exitCode).toBe(0)
  })

  test("--dry-run prints the plan and changes nothing on the host", () => {
    const s = setup()
    const pod = createPod()
    const hostBefore = hostLinks()
    const testHostBefore = JSON.stringify(links(s.host.name))
    const podBefore = JSON.stringify(links(pod.name))

    const add = cni("add", "podnet", pod.name, "--dry-run", ...s.flags)
    expect(add.stderr).toBe("")
    expect(add.exitCode).toBe(0)
    expect(add.stdout).toContain("dry run: ADD network podnet")
    expect(add.stdout).toContain("1. bridge ADD ok")
    expect(add.stdout).toMatch(/step vethPair apply ok/)
    expect(add.stdout).toContain("↳ delegated to host-local ADD: ok")
    expect(add.stdout).toContain("host: + link cni-cli0 (bridge")
    expect(add.stdout).toMatch(/^10\.124\.0\.2\/24\s+10\.124\.0\.1\s+eth0$/m)

    const del = cni("del", "podnet", pod.name, "--dry-run", "--json", ...s.flags)
    expect(del.exitCode).toBe(0)
    expect(JSON.parse(del.stdout)).toMatchObject({ verb: "DEL", entries: [{ type: "bridge", verb: "DEL", ok: true }] })

    expect(hostLinks()).toBe(hostBefore)
    expect(JSON.stringify(links(s.host.name))).toBe(testHostBefore)
    expect(JSON.stringify(links(pod.name))).toBe(podBefore)
    expect(existsSync(s.cacheDir)).toBe(false)
    expect(existsSync(s.dataDir)).toBe(false)
  })

  test("errors: unknown network, plugin error with code on stderr", () => {
    const s = setup()
    const pod = createPod()
    const missing = cniIn(s.host, "add", "nope", pod.name, ...s.flags)
    expect(missing.exitCode).toBe(1)
    expect(missing.stderr).toContain('[code 7] no network named "nope"')
    writeFileSync(join(s.confDir, "20-bad.conflist"), JSON.stringify({
      cniVersion: "1.0.0",
      name: "bad",
      plugins: [{ type: "bridge", bridge: "cni-cli1", ipam: { type: "host-local", ranges: [[{ subnet: "10.125.0.0/24" }]], dataDir: s.dataDir }, mtu: -1 }]
    }))
    const bad = cniIn(s.host, "add", "bad", pod.name, "--json", ...s.flags)
    expect(bad.exitCode).toBe(1)
    expect(bad.stdout).toBe("")
    expect(JSON.parse(bad.stderr)).toMatchObject({ plugin: "bridge", verb: "ADD", code: 7 })
    expect(existsSync(join(s.cacheDir, `bad-${pod.name}-eth0`))).toBe(false)
    expect(links(pod.name)).toEqual(["lo"])
  })
})
