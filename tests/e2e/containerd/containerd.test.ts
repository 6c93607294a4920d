/**
 * The path kubelet takes to tscni, for real: CRI calls (runtime.v1, over containerd's
 * socket) to Debian's containerd 1.6 with runc, whose CRI plugin runs tscni's compiled
 * plugins (installed by tscni-install) through libcni with the test's conflist (bridge +
 * host-local, portmap, bandwidth, and a recording plugin). Observed with ip -j, tc -j, the
 * IPAM store and traffic. Run by tests/e2e/containerd/run.sh (TSCNI_CONTAINERD=1; setup.sh
 * installs containerd).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { measure } from "../../integration/traffic.ts"
import { BIN, type ContainerdNode, sandboxConfig, sandboxNetwork, startNode } from "./harness.ts"

const ENABLED = process.env.TSCNI_CONTAINERD === "1"

const ipJson = (netnsPath: string, ...args: Array<string>): Array<Record<string, any>> =>
  JSON.parse(Bun.spawnSync(["nsenter", `--net=${netnsPath}`, "ip", "-j", ...args]).stdout.toString() || "[]")

/** The calls the recording plugin saw, oldest first. */
const recorded = (node: ContainerdNode): Array<{ command: string; args: string; cniVersion?: string }> =>
  existsSync(node.argsLog) ? readFileSync(node.argsLog, "utf8").split("\n").filter((line) => line !== "").map((line) => JSON.parse(line)) : []

const allocations = (node: ContainerdNode): Array<string> => {
  const dir = `${node.ipamDir}/tscni-cri`
  return existsSync(dir) ? readdirSync(dir).filter((name) => /^\d/.test(name)).sort() : []
}

/** Every element of tscni's keyed nftables sets in the node (masquerade sources, hostPort maps), as nft -j lists them. */
const nftElements = (node: ContainerdNode): Array<unknown> => {
  const ruleset = JSON.parse(Bun.spawnSync(["ip", "netns", "exec", node.netns, "nft", "-j", "list", "ruleset"]).stdout.toString() || "{\"nftables\":[]}") as { nftables: Array<{ set?: { table: string; elem?: Array<unknown> }; map?: { table: string; elem?: Array<unknown> } }> }
  return ruleset.nftables.flatMap((entry) => {
    const set = entry.set ?? entry.map
    return set !== undefined && set.table.startsWith("tscni-") ? set.elem ?? [] : []
  })
}

const hostVeths = (node: ContainerdNode): Array<string> =>
  (JSON.parse(Bun.spawnSync(["ip", "-n", node.netns, "-j", "link", "show", "type", "veth"]).stdout.toString() || "[]") as Array<{ ifname: string }>).map((link) => link.ifname)

describe.skipIf(!ENABLED)("containerd's CRI runs tscni", () => {
  let node: ContainerdNode

  beforeAll(async () => {
    node = await startNode()
  })
  afterAll(async () => {
    await node?.stop()
  })

  const run = async (name: string, extra?: Parameters<typeof sandboxConfig>[1]) => {
    const { podSandboxId } = await node.cri.call("runPodSandbox", { config: sandboxConfig(name, extra) })
    return { id: String(podSandboxId), ...(await sandboxNetwork(node.cri, podSandboxId)) }
  }
  const stop = (id: string) => node.cri.call("stopPodSandbox", { podSandboxId: id })
  const remove = (id: string) => node.cri.call("removePodSandbox", { podSandboxId: id })

  // each test leaves nothing behind, also when it fails: a failure must not become the next test's
  afterEach(async () => {
    for (const sandbox of (await node.cri.call("listPodSandbox", {})).items as Array<{ id: string }>) {
      await stop(sandbox.id).catch(() => undefined)
      await remove(sandbox.id).catch(() => undefined)
    }
  })

  test("RunPodSandbox gets an IP: the sandbox's namespace has lo up and eth0 with that IP and the default route via the node", async () => {
    const sandbox = await run("p1")
    expect(sandbox.state).toBe("SANDBOX_READY")
    expect(sandbox.ip).toMatch(/^10\.88\.0\.\d+$/)
    const links = ipJson(sandbox.netnsPath, "addr", "show")
    const lo = links.find((link) => link.ifname === "lo")!
    expect(lo.flags).toContain("UP")
    const eth0 = links.find((link) => link.ifname === "eth0")!
    expect(eth0.addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`)).toContain(`${sandbox.ip}/24`)
    expect(ipJson(sandbox.netnsPath, "route", "show", "default")).toEqual([expect.objectContaining({ gateway: "10.88.0.1", dev: "eth0" })])
    expect(allocations(node)).toEqual([sandbox.ip])
    await stop(sandbox.id)
    await remove(sandbox.id)
  })

  test("CNI_ARGS carry the pod's namespace, name, infra container ID and UID, with IgnoreUnknown=1", async () => {
    const sandbox = await run("args-pod")
    const add = recorded(node).filter((call) => call.command === "ADD").at(-1)!
    const args = Object.fromEntries(add.args.split(";").map((pair) => pair.split("=") as [string, string]))
    expect(args).toEqual({ IgnoreUnknown: "1", K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "args-pod", K8S_POD_INFRA_CONTAINER_ID: sandbox.id, K8S_POD_UID: "uid-args-pod" })
    await stop(sandbox.id)
    await remove(sandbox.id)
  })

  test("two sandboxes reach each other", async () => {
    const [a, b] = [await run("ping-a"), await run("ping-b")]
    expect(a.ip).not.toBe(b.ip)
    expect(Bun.spawnSync(["nsenter", `--net=${a.netnsPath}`, "ping", "-c", "1", "-W", "5", b.ip]).exitCode).toBe(0)
    for (const sandbox of [a, b]) {
      await stop(sandbox.id)
      await remove(sandbox.id)
    }
  })

  test("a sandbox's port mapping makes it reachable on its hostPort from the node", async () => {
    const sandbox = await run("web", { portMappings: [{ protocol: "TCP", containerPort: 80, hostPort: 8080 }] })
    const server = Bun.spawn(["nsenter", `--net=${sandbox.netnsPath}`, process.execPath, "-e",
      `Bun.serve({ hostname: "0.0.0.0", port: 80, fetch: () => new Response("served by the sandbox\\n") }); console.log("listening")`], { stdout: "pipe" })
    try {
      await server.stdout.getReader().read()
      const fetched = Bun.spawnSync(["nsenter", `--net=/var/run/netns/${node.netns}`, "curl", "-s", "--max-time", "5", "http://10.88.0.1:8080/"])
      expect(fetched.stdout.toString()).toBe("served by the sandbox\n")
    } finally {
      server.kill("SIGKILL")
      await server.exited
    }
    await stop(sandbox.id)
    await remove(sandbox.id)
  })

  test("the bandwidth annotations shape the sandbox (tbf towards it and on the ifb its egress is redirected to, with containerd's burst)", async () => {
    const sandbox = await run("shaped", { annotations: { "kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "2M" } })
    const qdiscs = JSON.parse(Bun.spawnSync(["tc", "-n", node.netns, "-j", "qdisc", "show"]).stdout.toString()) as Array<{ kind: string; dev: string; options?: { rate?: number } }>
    const tbfs = qdiscs.filter((qdisc) => qdisc.kind === "tbf").map((qdisc) => qdisc.options?.rate).sort((a, b) => (a ?? 0) - (b ?? 0))
    // tc -j reports bytes per second: 1 Mbit/s and 2 Mbit/s
    expect(tbfs).toEqual([125000, 250000])
    // containerd 1.6 sends a burst of MaxUint32 bits (~512 MiB) with the annotations' rates,
    // as kubelet's annotations carry no burst: a transfer runs at the limit only after that
    // much, so the rate itself is measured where tscni decides the burst
    // (tests/integration/bandwidth.test.ts, 1 Mbit/s held to 0.6-1.6 Mbit/s). Here: a
    // transfer of less than that burst is not held back (the tbf is in place, with containerd's burst).
    const work = mkdtempSync(join(tmpdir(), "tscni-rate-"))
    try {
      const rate = await measure(work, node.netns, sandbox.netnsPath.split("/").pop()!, sandbox.ip, 5301)
      expect(rate).toBeGreaterThan(10 * 1_000_000)
    } finally {
      rmSync(work, { recursive: true, force: true })
    }
    await stop(sandbox.id)
    await remove(sandbox.id)
    const after = JSON.parse(Bun.spawnSync(["tc", "-n", node.netns, "-j", "qdisc", "show"]).stdout.toString()) as Array<{ kind: string }>
    expect(after.filter((qdisc) => qdisc.kind === "tbf")).toEqual([])
  })

  test("StopPodSandbox runs DEL: no veth, allocation, set element or qdisc left; stopping twice is fine; RemovePodSandbox after it is clean", async () => {
    const sandbox = await run("stopped", { portMappings: [{ protocol: "TCP", containerPort: 80, hostPort: 8081 }], annotations: { "kubernetes.io/ingress-bandwidth": "5M" } })
    expect(hostVeths(node)).toHaveLength(1)
    expect(nftElements(node)).not.toEqual([])
    await stop(sandbox.id)
    expect(hostVeths(node)).toEqual([])
    expect(allocations(node)).toEqual([])
    expect(nftElements(node)).toEqual([])
    expect((JSON.parse(Bun.spawnSync(["tc", "-n", node.netns, "-j", "qdisc", "show"]).stdout.toString()) as Array<{ kind: string }>).filter((q) => q.kind === "tbf")).toEqual([])
    expect(existsSync(sandbox.netnsPath)).toBe(false)
    await stop(sandbox.id)
    await remove(sandbox.id)
    const dels = recorded(node).filter((call) => call.command === "DEL" && call.args.includes(`K8S_POD_INFRA_CONTAINER_ID=${sandbox.id}`))
    expect(dels.length).toBeGreaterThanOrEqual(1)
    expect((await node.cri.call("listPodSandbox", {})).items).toEqual([])
  })

  test("20 sandboxes started at once: 20 distinct IPs, all reachable, all cleaned up", async () => {
    const sandboxes = await Promise.all(Array.from({ length: 20 }, (_, i) => run(`burst-${i}`)))
    expect(new Set(sandboxes.map((s) => s.ip)).size).toBe(20)
    for (const sandbox of sandboxes.slice(1)) {
      expect({ ip: sandbox.ip, exitCode: Bun.spawnSync(["nsenter", `--net=${sandboxes[0]!.netnsPath}`, "ping", "-c", "1", "-W", "5", sandbox.ip]).exitCode }).toEqual({ ip: sandbox.ip, exitCode: 0 })
    }
    await Promise.all(sandboxes.map(async (sandbox) => {
      await stop(sandbox.id)
      await remove(sandbox.id)
    }))
    expect(hostVeths(node)).toEqual([])
    expect(allocations(node)).toEqual([])
  }, 180_000)

  test("conflist cniVersion 0.4.0 and 1.0.0 work; 1.1.0, which containerd 1.6's libcni cannot read results of, fails RunPodSandbox and leaves nothing", async () => {
    /** Runs a sandbox once containerd has loaded the conflist of `version` (it reloads conf_dir on change, a moment later). */
    const runWith = async (version: string) => {
      for (let attempt = 0; ; attempt++) {
        const sandbox = await run(`version-${version.replaceAll(".", "")}-${attempt}`)
        const add = recorded(node).filter((call) => call.command === "ADD" && call.args.includes(`K8S_POD_INFRA_CONTAINER_ID=${sandbox.id}`)).at(-1)
        if (add?.cniVersion === version || attempt >= 100) return { sandbox, seen: add?.cniVersion }
        await stop(sandbox.id)
        await remove(sandbox.id)
        await Bun.sleep(100)
      }
    }
    for (const version of ["0.4.0", "1.0.0"]) {
      node.setConflist(version)
      const { sandbox, seen } = await runWith(version)
      expect({ version, seen, ip: sandbox.ip.startsWith("10.88.0.") }).toEqual({ version, seen: version, ip: true })
      await stop(sandbox.id)
      await remove(sandbox.id)
    }
    node.setConflist("1.1.0")
    try {
    let refused = ""
    for (let attempt = 0; attempt < 100 && refused === ""; attempt++) {
      try {
        const sandbox = await run(`version-110-${attempt}`)
        // the old config still loaded: undo and try again once containerd saw the new one
        await stop(sandbox.id)
        await remove(sandbox.id)
        await Bun.sleep(100)
      } catch (error) {
        refused = String(error)
      }
    }
    expect(refused).toContain("unsupported CNI result version \"1.1.0\"")
    // containerd tore the attempt down with DEL: nothing of it is left
    expect(hostVeths(node)).toEqual([])
    expect(allocations(node)).toEqual([])
    } finally {
      node.setConflist("1.0.0")
    }
    const { sandbox } = await runWith("1.0.0")
    await stop(sandbox.id)
    await remove(sandbox.id)
  })

  test("containerd SIGKILLed in the middle of RunPodSandbox (after tscni's ADD): after a restart, stopping and removing what it reports, then tscni's GC, leaves nothing", async () => {
    const gate = join(node.dir, "gate")
    const entered = join(node.dir, "entered")
    writeFileSync(gate, "hold")
    const pending = node.cri.call("runPodSandbox", { config: sandboxConfig("killed") }).then(() => "ran", (error) => `failed: ${error}`)
    // the chain's last plugin is holding the ADD: bridge, host-local and portmap are done
    for (let attempt = 0; !existsSync(entered); attempt++) {
      if (attempt > 1500) throw new Error("RunPodSandbox never reached the chain's last plugin")
      await Bun.sleep(20)
    }
    const sandboxNetns = readFileSync(entered, "utf8")
    expect(hostVeths(node)).toHaveLength(1)
    await node.stopContainerd("SIGKILL")
    rmSync(gate)
    rmSync(entered)
    expect(await pending).toMatch(/^failed/)
    await node.startContainerd()
    for (const sandbox of (await node.cri.call("listPodSandbox", {})).items as Array<{ id: string }>) {
      await stop(sandbox.id)
      await remove(sandbox.id)
    }
    // tscni's GC with no attachment left valid: the cni CLI on a 1.1.0 copy of the network (GC is a 1.1.0 verb)
    const gcDir = mkdtempSync(join(tmpdir(), "tscni-gc-"))
    try {
      mkdirSync(join(gcDir, "net.d"))
      const conflist = JSON.parse(readFileSync(join(node.confDir, "10-tscni.conflist"), "utf8"))
      writeFileSync(join(gcDir, "net.d", "10-tscni.conflist"), JSON.stringify({ ...conflist, cniVersion: "1.1.0" }))
      const gc = Bun.spawnSync(["nsenter", `--net=/var/run/netns/${node.netns}`, join(BIN, "cni"), "gc", "tscni-cri", "--conf-dir", join(gcDir, "net.d"), "--bin-dir", node.binDir, "--cache-dir", join(gcDir, "cache")])
      expect({ exitCode: gc.exitCode, output: gc.stderr.toString() }).toEqual({ exitCode: 0, output: expect.stringContaining("bridge GC… ok") })
    } finally {
      rmSync(gcDir, { recursive: true, force: true })
    }
    expect(hostVeths(node)).toEqual([])
    expect(allocations(node)).toEqual([])
    // the pod namespace is containerd's to remove; one a killed containerd forgot goes here
    if (existsSync(sandboxNetns)) Bun.spawnSync(["ip", "netns", "delete", sandboxNetns.split("/").pop()!])
  })

  test("dual stack: PodSandboxStatus has the IPv4 address as its IP and the IPv6 one among the additional IPs, both on eth0", async () => {
    node.setConflist("1.0.0", true)
    try {
      let sandbox = await run("dual-0")
      // containerd reloads conf_dir a moment after the change: until a sandbox gets both families
      for (let attempt = 1; sandbox.additional.length === 0 && attempt < 100; attempt++) {
        await stop(sandbox.id)
        await remove(sandbox.id)
        await Bun.sleep(100)
        sandbox = await run(`dual-${attempt}`)
      }
      expect(sandbox.ip).toMatch(/^10\.88\.0\.\d+$/)
      expect(sandbox.additional).toEqual([expect.stringMatching(/^fd00:88::/)])
      const eth0 = ipJson(sandbox.netnsPath, "addr", "show", "dev", "eth0")[0]!
      const globals = (eth0.addr_info as Array<{ local: string; scope: string }>).filter((a) => a.scope === "global").map((a) => a.local)
      expect(globals.sort()).toEqual([sandbox.ip, sandbox.additional[0]!].sort())
      await stop(sandbox.id)
      await remove(sandbox.id)
    } finally {
      node.setConflist("1.0.0")
    }
  })

  test("containerd restarted with a sandbox running: it keeps its network, and stopping it afterwards is clean", async () => {
    const [a, b] = [await run("kept-a"), await run("kept-b")]
    await node.stopContainerd("SIGTERM")
    await node.startContainerd()
    expect(Bun.spawnSync(["nsenter", `--net=${a.netnsPath}`, "ping", "-c", "1", "-W", "5", b.ip]).exitCode).toBe(0)
    expect((await sandboxNetwork(node.cri, a.id)).ip).toBe(a.ip)
    for (const sandbox of [a, b]) {
      await stop(sandbox.id)
      await remove(sandbox.id)
    }
    expect(hostVeths(node)).toEqual([])
    expect(allocations(node)).toEqual([])
  })
})

describe.skipIf(!ENABLED)("containerd's CRI with tscni agent serving the calls", () => {
  let node: ContainerdNode

  beforeAll(async () => {
    node = await startNode({ withAgent: true })
  })
  afterAll(async () => {
    await node?.stop()
  })

  test("RunPodSandbox and StopPodSandbox are served by the agent; 20 at once get 20 distinct IPs and leave nothing", async () => {
    const run = async (name: string) => {
      const { podSandboxId } = await node.cri.call("runPodSandbox", { config: sandboxConfig(name) })
      return { id: String(podSandboxId), ...(await sandboxNetwork(node.cri, podSandboxId)) }
    }
    const sandboxes = await Promise.all(Array.from({ length: 20 }, (_, i) => run(`agent-${i}`)))
    expect(new Set(sandboxes.map((s) => s.ip)).size).toBe(20)
    expect(Bun.spawnSync(["nsenter", `--net=${sandboxes[0]!.netnsPath}`, "ping", "-c", "1", "-W", "5", sandboxes[19]!.ip]).exitCode).toBe(0)
    await Promise.all(sandboxes.map(async (sandbox) => {
      await node.cri.call("stopPodSandbox", { podSandboxId: sandbox.id })
      await node.cri.call("removePodSandbox", { podSandboxId: sandbox.id })
    }))
    expect(hostVeths(node)).toEqual([])
    expect(allocations(node)).toEqual([])
    // the agent's own count of bridge calls it served (the forwarding processes never run the plugin themselves)
    const served = (command: string) =>
      [...node.agentMetrics!().matchAll(new RegExp(`tscni_agent_calls_total\\{plugin="bridge",command="${command}",exit_code="0"\\} (\\d+)`, "g"))]
        .reduce((sum, match) => sum + Number(match[1]), 0)
    expect(served("ADD")).toBe(20)
    expect(served("DEL")).toBeGreaterThanOrEqual(20)
  }, 180_000)
})
