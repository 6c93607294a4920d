/**
 * The whole Kubernetes chain, run as a runtime would (through the compiled `cni` CLI, in a
 * namespace standing in for the node): bridge → portmap → bandwidth → tuning → firewall,
 * prevResult passing through, reached on its hostPort, shaped, tuned; DEL in reverse
 * leaves nothing. Plus the chain plugins after the reference bridge, and a fault at every
 * kernel call of each chained plugin's ADD on the real kernel.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { mkdirSync, writeFileSync } from "node:fs"
import { resolve } from "node:path"
import { BIN_DIR, binary, kernelFaultSweep, freshNetns, type PluginRun } from "./harness.ts"
import { fetchIn, serveIn } from "./traffic.ts"
import { execIn, freshHost, observe, observeAfterDel, type TestHost } from "./hostns.ts"

type Json = Record<string, any>

const CNI = binary("cni")
const DRIVER = resolve(import.meta.dir, "fault-driver.ts")
const REFERENCE_BRIDGE = "/usr/lib/cni/bridge"

const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))
const host = (): TestHost => {
  const h = freshHost()
  cleanups.push(h.remove)
  return h
}

const chain = (h: TestHost): Json => ({
  cniVersion: "1.1.0",
  name: "chainnet",
  plugins: [
    {
      type: "bridge",
      bridge: "cni-ch0",
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.126.0.0/24" }]], dataDir: `${h.dir}/ipam` }
    },
    { type: "portmap", capabilities: { portMappings: true } },
    { type: "bandwidth", capabilities: { bandwidth: true } },
    { type: "tuning", sysctl: { "net.core.somaxconn": "777" }, dataDir: `${h.dir}/tuning` },
    { type: "firewall" }
  ]
})

/** Runs argv on the test node; stdout is parsed only when it is JSON (`cni … --json`). */
const runOn = (h: TestHost, argv: Array<string>): PluginRun => {
  const out = Bun.spawnSync(["ip", "netns", "exec", h.name, ...argv], { stdout: "pipe", stderr: "pipe" })
  const stdout = out.stdout.toString()
  const json = stdout.trim().startsWith("{") ? (JSON.parse(stdout) as Record<string, unknown>) : undefined
  return { exitCode: out.exitCode ?? -1, stdout, stderr: out.stderr.toString(), json }
}

/** `cni SUB [flags] ARGS` on the test node, with the test's conf, bin and cache dirs. */
const cni = (h: TestHost, sub: string, args: Array<string>, binDir = BIN_DIR): PluginRun =>
  runOn(h, [CNI, sub, "--conf-dir", `${h.dir}/net.d`, "--bin-dir", binDir, "--cache-dir", `${h.dir}/cache`, ...args])

const writeConf = (h: TestHost, conf: Json) => {
  mkdirSync(`${h.dir}/net.d`, { recursive: true })
  writeFileSync(`${h.dir}/net.d/10-chain.conflist`, JSON.stringify(conf))
}


const read = (netns: string, argv: Array<string>): string => Bun.spawnSync(["ip", "netns", "exec", netns, ...argv]).stdout.toString()

/** Waits (≤ 5 s) until no IPv6 address is tentative: DAD finishing changes routes by itself. */
const settle = async (...namespaces: Array<string>) => {
  for (let i = 0; i < 50; i++) {
    if (!namespaces.some((ns) => read(ns, ["ip", "-j", "addr"]).includes('"tentative"'))) return
    await Bun.sleep(100)
  }
}

describe("the full chain through the cni CLI", () => {
  test("bridge → portmap → bandwidth → tuning → firewall: reachable on the hostPort, shaped, tuned; DEL leaves nothing", async () => {
    const h = host()
    writeConf(h, chain(h))
    const p1 = freshNetns()
    const p2 = freshNetns()
    const nodeBefore = observe(h.name)
    const pod1Before = read(p1.name, ["cat", "/proc/sys/net/core/somaxconn"])

    const add1 = cni(h, "add", [
      "--json",
      "--cap", 'portMappings=[{"hostPort":8085,"containerPort":80,"protocol":"tcp"}]',
      "--cap", 'bandwidth={"ingressRate":2000000,"ingressBurst":200000,"egressRate":2000000,"egressBurst":200000}',
      "chainnet", p1.path
    ])
    expect([add1.exitCode, add1.stderr.includes("error")]).toEqual([0, false])
    const add2 = cni(h, "add", ["--json", "chainnet", p2.path])
    expect(add2.exitCode).toBe(0)

    // prevResult went through every plugin: the final result has the bridge's interfaces,
    // bandwidth's ifb, and the pod's IP
    const result = add1.json!
    const names = (result.interfaces as Array<Json>).map((i) => i.name)
    expect(names[0]).toBe("cni-ch0")
    expect(names).toContain("eth0")
    expect(names.some((n) => n.startsWith("bwp"))).toBe(true)
    expect((result.ips as Array<Json>)[0]!.address).toBe("10.126.0.2/24")

    await serveIn(cleanups, p1.name, 80, "hello through the chain")
    expect(fetchIn(h.name, "http://127.0.0.1:8085/")).toBe("hello through the chain")
    expect(fetchIn(h.name, "http://10.126.0.1:8085/")).toBe("hello through the chain")
    expect(fetchIn(p2.name, "http://10.126.0.1:8085/")).toBe("hello through the chain")

    // shaped (tc) and tuned (/proc), firewalled (nft), observed with the kernel's tools
    const qdiscs = JSON.parse(read(h.name, ["tc", "-j", "qdisc", "show"])) as Array<Json>
    expect(qdiscs.filter((q) => q.kind === "tbf").map((q) => q.options.rate)).toEqual([250000, 250000])
    expect(read(p1.name, ["cat", "/proc/sys/net/core/somaxconn"]).trim()).toBe("777")
    const firewalled = read(h.name, ["nft", "list", "ruleset"]).split("\n").filter((line) => line.includes("10.126.0.2 comment \"fw:"))
    expect(firewalled).toHaveLength(1)

    expect(cni(h, "check", ["chainnet", p1.path]).exitCode).toBe(0)

    for (const p of [p1, p2]) expect(cni(h, "del", ["chainnet", p.path]).exitCode).toBe(0)
    expect(read(p1.name, ["cat", "/proc/sys/net/core/somaxconn"])).toBe(pod1Before)
    expect(observeAfterDel(h.name)).toBe(nodeBefore)
    expect(read(h.name, ["ls", `${h.dir}/ipam/chainnet`]).split("\n").filter((f) => /^\d/.test(f))).toEqual([])
    p1.remove()
    p2.remove()
  }, 120_000)
})

describe("chained after the reference bridge", () => {
  test("our portmap, bandwidth, tuning and firewall after Debian's bridge", async () => {
    const h = host()
    // Debian's reference plugins speak up to 1.0.0
    const conf: Json = { ...chain(h), cniVersion: "1.0.0" }
    conf.plugins[0] = { ...conf.plugins[0], ipMasq: false }
    writeConf(h, conf)
    // the reference bridge, found first in CNI_PATH; everything else is ours
    const mixed = `${h.dir}/bin`
    mkdirSync(mixed, { recursive: true })
    Bun.spawnSync(["ln", "-s", REFERENCE_BRIDGE, `${mixed}/bridge`])
    const p = freshNetns()
    const nodeBefore = observe(h.name)
    const run = (sub: string, args: Array<string>) => cni(h, sub, args, `${mixed}:${BIN_DIR}`)
    const add = run("add", [
      "--json",
      "--cap", 'portMappings=[{"hostPort":8086,"containerPort":80,"protocol":"tcp"}]',
      "--cap", 'bandwidth={"ingressRate":2000000,"ingressBurst":200000,"egressRate":2000000,"egressBurst":200000}',
      "chainnet", p.path
    ])
    expect({ code: add.exitCode, failed: add.stderr.includes("failed") }).toEqual({ code: 0, failed: false })
    await serveIn(cleanups, p.name, 80, "reference bridge, our chain")
    expect(fetchIn(h.name, "http://10.126.0.1:8086/")).toBe("reference bridge, our chain")
    expect(JSON.parse(read(h.name, ["tc", "-j", "qdisc", "show"])).filter((q: Json) => q.kind === "tbf")).toHaveLength(2)
    expect(run("check", ["chainnet", p.path]).exitCode).toBe(0)
    expect(run("del", ["chainnet", p.path]).exitCode).toBe(0)
    p.remove()
    // the reference bridge keeps its bridge (and its gateway address): compare the rest
    const keep = (state: string) => {
      const parsed = JSON.parse(state) as Json
      return JSON.stringify({ qdiscs: parsed.qdiscs.filter((q: Json) => q.kind !== "noqueue"), nft: parsed.nft })
    }
    expect(keep(observeAfterDel(h.name))).toBe(keep(nodeBefore))
  }, 120_000)
})

describe("a fault at every kernel call of each chained plugin's ADD", () => {
  const mappings = [{ hostPort: 8087, containerPort: 80, protocol: "tcp" }]
  const bandwidth = { ingressRate: 2000000, ingressBurst: 200000, egressRate: 2000000, egressBurst: 200000 }
  // tuning twice: with a sysctl, and with every link option (each must be put back on the pod's eth0)
  const linkOptions = { mac: "0a:58:0a:7e:00:99", mtu: 1280, txQLen: 500, promisc: true, allmulti: true }
  const cases = [
    ["bandwidth", "bandwidth", {}],
    // one direction each: ingress is a tbf on the host veth, egress an ifb with a redirect
    ["bandwidth", "bandwidth: ingress only", { runtimeConfig: { portMappings: mappings, bandwidth: { ingressRate: bandwidth.ingressRate, ingressBurst: bandwidth.ingressBurst } } }],
    ["bandwidth", "bandwidth: egress only", { runtimeConfig: { portMappings: mappings, bandwidth: { egressRate: bandwidth.egressRate, egressBurst: bandwidth.egressBurst } } }],
    ["tuning", "tuning", {}],
    ["tuning", "tuning: mac, mtu, txQLen, promisc, allmulti", linkOptions],
    ["firewall", "firewall", {}],
    ["firewall", "firewall: same-bridge", { ingressPolicy: "same-bridge" }],
    ["firewall", "firewall: isolated", { ingressPolicy: "isolated" }]
  ] as const
  for (const [plugin, label, extra] of cases) {
    test(label, async () => {
      const h = host()
      const conf = chain(h)
      const p = freshNetns()
      const env = (command: string) => ({
        CNI_COMMAND: command,
        CNI_CONTAINERID: `fault-${plugin}`,
        CNI_NETNS: p.path,
        CNI_IFNAME: "eth0",
        CNI_PATH: BIN_DIR
      })
      const pluginConf = (prevResult: Json): Json => ({
        ...conf.plugins.find((x: Json) => x.type === plugin),
        cniVersion: "1.1.0",
        name: "chainnet",
        runtimeConfig: { portMappings: mappings, bandwidth },
        ...extra,
        prevResult
      })
      const bridged = execIn(h, binary("bridge"), env("ADD"), JSON.stringify({ ...conf.plugins[0], cniVersion: "1.1.0", name: "chainnet" }))
      expect(bridged.exitCode).toBe(0)
      await settle(h.name, p.name)
      const before = { node: observe(h.name), pod: observe(p.name) + read(p.name, ["cat", "/proc/sys/net/core/somaxconn"]) }
      const faults = kernelFaultSweep(
        (k) => execIn(h, ["bun", DRIVER, plugin, String(k)], env("ADD"), JSON.stringify(pluginConf(bridged.json!))),
        () => expect(execIn(h, binary(plugin), env("DEL"), JSON.stringify(pluginConf(bridged.json!))).exitCode).toBe(0),
        (k) => {
          const after = { node: observe(h.name), pod: observe(p.name) + read(p.name, ["cat", "/proc/sys/net/core/somaxconn"]) }
          expect({ k, after }).toEqual({ k, after: before })
        }
      )
      // one failed run per kernel call of the ADD (kernelFaultSweep tolerates none): at least one
      expect(faults).toBeGreaterThan(0)
      p.remove()
    }, 180_000)
  }
})
