import { afterEach, describe, expect, test } from "bun:test"
import { existsSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { Effect } from "effect"
import { dryRun, formatPlan } from "../src/dryrun/plan.ts"
import { redirectState } from "../src/dryrun/inprocess.ts"
import type { Attachment } from "../src/chain.ts"
import { makeSandbox, type Sandbox } from "./fakes.ts"

let box: Sandbox
afterEach(() => box.remove())

const attachment: Attachment = { containerId: "pod1", netns: "/var/run/netns/tscni-dry", ifname: "eth0", cniArgs: [], capabilityArgs: {} }

const bridgeList = (dataDir: string) => ({
  cniVersion: "1.0.0",
  name: "drynet",
  plugins: [
    {
      type: "bridge",
      bridge: "cni-dry0",
      isGateway: true,
      ipMasq: true,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.77.0.0/24" }]], dataDir }
    }
  ]
})

const scratchDirs = () => readdirSync(tmpdir()).filter((n) => n.startsWith("tscni-dryrun-")).sort()

describe("dry run", () => {
  test("ADD: every step of every plugin, the model kernel's changes, the result; nothing written", async () => {
    box = makeSandbox()
    const dataDir = `${box.root}/ipam`
    box.conf("10-dry.conflist", bridgeList(dataDir))
    const before = scratchDirs()
    const report = await Effect.runPromise(dryRun({ verb: "ADD", confDir: box.confDir, network: "drynet", attachment }))
    expect(report.error).toBeUndefined()
    expect(report.entries.map((e) => `${e.type} ${e.verb} ${e.ok}`)).toEqual(["bridge ADD true"])
    const bridge = report.entries[0]!
    expect(bridge.steps.some((s) => s.startsWith("step vethPair apply ok"))).toBe(true)
    expect(bridge.steps.some((s) => s.startsWith("step ipamAllocate apply ok"))).toBe(true)
    expect(bridge.delegated.map((d) => `${d.type} ${d.verb} ${d.ok}`)).toEqual(["host-local ADD true"])
    expect(bridge.changes).toContain("host: + link cni-dry0 (bridge, index 2)")
    expect(bridge.changes).toContain("/var/run/netns/tscni-dry: + address eth0 10.77.0.2/24")
    expect(report.result).toMatchObject({ ips: [{ address: "10.77.0.2/24", gateway: "10.77.0.1" }] })
    // host-local wrote to a scratch dir (removed), never to the configured dataDir
    expect(existsSync(dataDir)).toBe(false)
    expect(scratchDirs()).toEqual(before)
    expect(existsSync(box.cacheDir)).toBe(false)
    const text = formatPlan(report, attachment)
    expect(text).toContain("1. bridge ADD ok")
    expect(text).toContain("↳ delegated to host-local ADD: ok")
    expect(text).toContain("     host: + link cni-dry0 (bridge, index 2)")
  })

  test("DEL: planned against what a simulated ADD left", async () => {
    box = makeSandbox()
    box.conf("10-dry.conflist", bridgeList(`${box.root}/ipam`))
    const report = await Effect.runPromise(dryRun({ verb: "DEL", confDir: box.confDir, network: "drynet", attachment }))
    expect(report.entries.map((e) => `${e.type} ${e.verb} ${e.ok}`)).toEqual(["bridge DEL true"])
    expect(report.entries[0]!.changes).toContain("/var/run/netns/tscni-dry: - link eth0 (veth, index 2)")
    expect(report.entries[0]!.delegated.map((d) => `${d.type} ${d.verb}`)).toEqual(["host-local DEL"])
  })

  test("a failing plugin is in the plan, with its error", async () => {
    box = makeSandbox()
    box.conf("10-dry.conflist", { cniVersion: "1.0.0", name: "drynet", plugins: [{ type: "bridge", ipam: { type: "static", addresses: [{ address: "bogus" }] } }] })
    const report = await Effect.runPromise(dryRun({ verb: "ADD", confDir: box.confDir, network: "drynet", attachment }))
    expect(report.entries.map((e) => e.ok)).toEqual([false])
    expect(report.error).toMatchObject({ _tag: "PluginFailed", plugin: "bridge", verb: "ADD" })
  })

  test("plugins that are not tscni's, and unnamed namespaces, are refused up front", async () => {
    box = makeSandbox()
    box.conf("10-x.conflist", { cniVersion: "1.0.0", name: "x", plugins: [{ type: "bridge" }, { type: "calico" }] })
    const error = await Effect.runPromise(Effect.flip(dryRun({ verb: "ADD", confDir: box.confDir, network: "x", attachment })))
    expect(error.msg).toContain("calico")
    box.conf("10-x.conflist", { cniVersion: "1.0.0", name: "x", plugins: [{ type: "loopback" }] })
    const path = await Effect.runPromise(
      Effect.flip(dryRun({ verb: "ADD", confDir: box.confDir, network: "x", attachment: { ...attachment, netns: "/proc/1/ns/net" } }))
    )
    expect(path.msg).toContain("named namespaces")
  })

  test("on-disk state (host-local's and tuning's dataDir) is pointed into the scratch dir", () => {
    const hostLocal = JSON.stringify({ type: "bridge", ipam: { type: "host-local", dataDir: "/var/lib/cni/networks" } })
    expect(JSON.parse(redirectState("bridge", hostLocal, "/tmp/s"))).toEqual({ type: "bridge", ipam: { type: "host-local", dataDir: "/tmp/s/host-local" } })
    expect(JSON.parse(redirectState("tuning", JSON.stringify({ type: "tuning", dataDir: "/var/lib/x" }), "/tmp/s"))).toEqual({ type: "tuning", dataDir: "/tmp/s/tuning" })
    const other = JSON.stringify({ type: "bridge", ipam: { type: "static" }, dataDir: "/keep" })
    expect(redirectState("bridge", other, "/tmp/s")).toBe(other)
  })

  test("a multi-plugin list with chained plugins runs in-process: portmap, bandwidth, tuning, firewall", async () => {
    box = makeSandbox()
    box.conf("10-chain.conflist", {
      cniVersion: "1.0.0",
      name: "chain",
      plugins: [
        { type: "bridge", bridge: "cni-dry1", isGateway: true, ipam: { type: "host-local", ranges: [[{ subnet: "10.78.0.0/24" }]] } },
        { type: "portmap", capabilities: { portMappings: true } },
        { type: "bandwidth", capabilities: { bandwidth: true } },
        { type: "tuning", sysctl: {} },
        { type: "firewall" }
      ]
    })
    const report = await Effect.runPromise(
      dryRun({
        verb: "ADD",
        confDir: box.confDir,
        network: "chain",
        attachment: {
          ...attachment,
          capabilityArgs: {
            portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
            bandwidth: { ingressRate: 1_000_000, ingressBurst: 4294967295 }
          }
        }
      })
    )
    expect(report.error).toBeUndefined()
    expect(report.entries.map((e) => `${e.type} ${e.ok}`)).toEqual(["bridge true", "portmap true", "bandwidth true", "tuning true", "firewall true"])
    expect(report.entries[1]!.changes.join("\n")).toContain("8080")
    expect(report.entries[2]!.changes.some((c) => c.includes("qdisc"))).toBe(true)
  })
})
