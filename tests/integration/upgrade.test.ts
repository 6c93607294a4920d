/**
 * An upgrade with pods alive: pods added by the release before the keyed layout (its rules
 * found by owner comment in `tscni-bridge`, `tscni-portmap`, `tscni-firewall` and the
 * TSCNI-BR-MASQ / TSCNI-PM-* iptables chains), then the new plugins installed in their
 * place. The old pods keep working and pass CHECK; new pods join beside them; GC and DEL of
 * the new release remove the old pods' rules, and the old tables and chains with the last.
 *
 * The old release is built here from git (its commit), as an operator would have it
 * installed; nothing of it is kept in the repository.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { BIN_DIR, binary, freshNetns, type PluginRun } from "./harness.ts"
import { freshHost, iptablesState, observe, type TestHost, withoutEmptyTables } from "./hostns.ts"
import { fetchIn, serveIn } from "./traffic.ts"

type Json = Record<string, any>

/** The last commit of the layout before keyed tables (rules found by owner comment). */
const OLD_RELEASE = "d1976c4d303595860d5e85e13a0a8aa95777129b"
const REPO = resolve(import.meta.dir, "..", "..")
const CNI = binary("cni")

const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

let oldBin = ""

/** Builds the old release's multicall binary and links the plugins to it, as tscni-install does. */
const buildOldRelease = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "tscni-old-"))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  const run = (argv: Array<string>, cwd: string) => {
    const out = Bun.spawnSync(argv, { cwd, stdout: "pipe", stderr: "pipe" })
    if (out.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${out.stderr.toString()}`)
  }
  // the repository's history must hold the old release (a full clone does)
  run(["sh", "-c", `git -C ${REPO} archive ${OLD_RELEASE} | tar -x -C ${dir}`], dir)
  run(["bun", "install", "--frozen-lockfile"], dir)
  run(["bun", "scripts/compile.ts", "packages/multicall/src/main.ts", "tscni"], dir)
  const bin = join(dir, "bin")
  mkdirSync(bin)
  for (const plugin of ["bridge", "portmap", "firewall", "host-local", "loopback"]) symlinkSync(join(dir, "dist", "bin", "tscni"), join(bin, plugin))
  return bin
}

beforeAll(() => {
  oldBin = buildOldRelease()
}, 300_000)

/** Two networks: nftables (the default), and one whose bridge and portmap use iptables. */
const network = (h: TestHost, name: string, bridge: string, subnet: string, iptables: boolean): Json => ({
  cniVersion: "1.1.0",
  name,
  plugins: [
    {
      type: "bridge",
      bridge,
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ...(iptables ? { ipMasqBackend: "iptables" } : {}),
      ipam: { type: "host-local", ranges: [[{ subnet }]], dataDir: `${h.dir}/ipam` }
    },
    { type: "portmap", capabilities: { portMappings: true }, ...(iptables ? { backend: "iptables" } : {}) },
    { type: "firewall" }
  ]
})

const runOn = (h: TestHost, argv: Array<string>): PluginRun => {
  const out = Bun.spawnSync(["ip", "netns", "exec", h.name, ...argv], { stdout: "pipe", stderr: "pipe" })
  const stdout = out.stdout.toString()
  return { exitCode: out.exitCode ?? -1, stdout, stderr: out.stderr.toString(), json: stdout.trim().startsWith("{") ? JSON.parse(stdout) : undefined }
}

/** `cni SUB …` on the node with the plugins of `bin` (the old release's, or this one's). */
const cni = (h: TestHost, bin: string, sub: string, args: Array<string>): PluginRun =>
  runOn(h, [CNI, sub, "--conf-dir", `${h.dir}/net.d`, "--bin-dir", bin, "--cache-dir", `${h.dir}/cache`, ...args])

const ports = (hostPort: number) => ["--cap", `portMappings=[{"hostPort":${hostPort},"containerPort":80,"protocol":"tcp"}]`]

const nft = (h: TestHost, ...args: Array<string>): string => runOn(h, ["nft", ...args]).stdout
const iptablesSave = (h: TestHost): string => iptablesState(h.name)

/** The node as observed, iptables-nft's own tables left to iptablesSave (they hold the TSCNI- chains). */
const nodeView = (h: TestHost): string => {
  const observed = JSON.parse(observe(h.name)) as Json
  const tables = withoutEmptyTables(observed.nft).split(/^(?=table )/m).filter((block) => !/^table ip6? (nat|filter|mangle) \{/.test(block))
  return JSON.stringify({ ...observed, nft: tables.join("") })
}

describe("an upgrade from the layout before keyed tables, with pods alive", () => {
  test("old pods keep working and pass CHECK; new pods join; GC and DEL remove the old rules and the old tables and chains with the last", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    mkdirSync(`${h.dir}/net.d`, { recursive: true })
    writeFileSync(`${h.dir}/net.d/10-nft.conflist`, JSON.stringify(network(h, "upnft", "cni-up0", "10.128.0.0/24", false)))
    writeFileSync(`${h.dir}/net.d/20-ipt.conflist`, JSON.stringify(network(h, "upipt", "cni-up1", "10.128.1.0/24", true)))
    const before = { node: nodeView(h), iptables: iptablesSave(h) }
    const pod = () => {
      const ns = freshNetns()
      cleanups.push(ns.remove)
      return ns
    }

    // the old release: A with a hostPort and B without, on nftables; C with a hostPort on iptables
    const [a, b, c] = [pod(), pod(), pod()]
    expect(cni(h, oldBin, "add", [...ports(8101), "upnft", a.path]).exitCode).toBe(0)
    expect(cni(h, oldBin, "add", ["upnft", b.path]).exitCode).toBe(0)
    expect(cni(h, oldBin, "add", [...ports(8102), "upipt", c.path]).exitCode).toBe(0)
    // the old layout, as nft and iptables-save show it: rules with owner comments
    expect(nft(h, "list", "table", "ip", "tscni-portmap")).toMatch(/tcp dport 8101 dnat to 10\.128\.0\.2:80 comment "pm:/)
    expect(nft(h, "list", "table", "inet", "tscni-firewall")).toContain("10.128.0.3")
    expect(iptablesSave(h)).toMatch(/-A TSCNI-PM-DNAT .*--dport 8102 .*-j DNAT --to-destination 10\.128\.1\.2:80/)
    await serveIn(cleanups, a.name, 80, "old pod A")
    await serveIn(cleanups, c.name, 80, "old pod C")

    // the new release in place of the old one
    for (const [ns, net] of [[a, "upnft"], [b, "upnft"], [c, "upipt"]] as const) {
      const check = cni(h, BIN_DIR, "check", [net, ns.path])
      expect({ net, code: check.exitCode, failed: check.stderr.includes("failed") }).toEqual({ net, code: 0, failed: false })
    }
    expect([fetchIn(h.name, "http://10.128.0.1:8101/"), fetchIn(h.name, "http://10.128.1.1:8102/")]).toEqual(["old pod A", "old pod C"])
    const [d, e] = [pod(), pod()]
    expect(cni(h, BIN_DIR, "add", [...ports(8103), "upnft", d.path]).exitCode).toBe(0)
    expect(cni(h, BIN_DIR, "add", [...ports(8104), "upipt", e.path]).exitCode).toBe(0)
    await serveIn(cleanups, d.name, 80, "new pod D")
    await serveIn(cleanups, e.name, 80, "new pod E")
    expect([fetchIn(h.name, "http://10.128.0.1:8103/"), fetchIn(h.name, "http://10.128.1.1:8104/")]).toEqual(["new pod D", "new pod E"])
    // old and new pods reach each other, and the old pods are still reached on their host ports
    expect(fetchIn(d.name, "http://10.128.0.2/")).toBe("old pod A")
    expect(fetchIn(a.name, "http://10.128.0.4/")).toBe("new pod D")
    expect([fetchIn(h.name, "http://10.128.0.1:8101/"), fetchIn(h.name, "http://10.128.1.1:8102/")]).toEqual(["old pod A", "old pod C"])

    // GC of the new release once B's namespace is gone: B's old rules go, A's stay
    b.remove()
    const gc = cni(h, BIN_DIR, "gc", ["upnft"])
    expect(gc.exitCode).toBe(0)
    expect(nft(h, "list", "table", "inet", "tscni-firewall")).not.toContain("10.128.0.3")
    expect(nft(h, "list", "table", "inet", "tscni-firewall")).toContain("10.128.0.2")

    // DEL of the new release: the old pods' rules go, and the old tables and chains with the last
    for (const [ns, net] of [[a, "upnft"], [b, "upnft"], [c, "upipt"]] as const) expect(cni(h, BIN_DIR, "del", [net, ns.path]).exitCode).toBe(0)
    expect(fetchIn(h.name, "http://10.128.0.1:8101/")).toStartWith("failed")
    expect(nft(h, "list", "tables")).not.toMatch(/tscni-(bridge|portmap|firewall|macspoof)\b/)
    expect(iptablesSave(h)).not.toMatch(/TSCNI-(BR|PM)-/)
    expect(fetchIn(h.name, "http://10.128.0.1:8103/")).toBe("new pod D")
    for (const [ns, net] of [[d, "upnft"], [e, "upipt"]] as const) expect(cni(h, BIN_DIR, "del", [net, ns.path]).exitCode).toBe(0)
    // the node as it was, but for the new layout's shared tables and chains, left empty
    expect({ node: nodeView(h), iptables: iptablesState(h.name, { withoutEmptyChains: true }) }).toEqual(before)
  }, 300_000)
})
