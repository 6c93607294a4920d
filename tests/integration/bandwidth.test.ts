import { afterAll, describe, expect, test } from "bun:test"
import { resolve } from "node:path"
import { BIN_DIR, binary, freshNetns, ipJson, kernelKillSweep, podEnv } from "./harness.ts"
import { execIn, freshHost, observe, spawnIn, type TestHost } from "./hostns.ts"
import { measure } from "./traffic.ts"

const BANDWIDTH = binary("bandwidth")
const BRIDGE = binary("bridge")
binary("host-local")
const DRIVER = resolve(import.meta.dir, "fault-driver.ts")

type Json = Record<string, any>

const MBIT = 1_000_000
/** 12.5 kB: room for eight full frames, small next to the 250 kB sent */
const BURST = 100_000
const GATEWAY = "10.131.0.1"
const POD_IP = "10.131.0.2"

const sh = (argv: ReadonlyArray<string>): string => {
  const proc = Bun.spawnSync([...argv], { stdout: "pipe", stderr: "pipe" })
  if (proc.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${proc.stderr.toString()}`)
  return proc.stdout.toString()
}
const hosts: Array<TestHost> = []
const host = () => {
  const h = freshHost()
  hosts.push(h)
  // no IPv6 duplicate address detection in the test host: the links a pod brings settle at
  // once instead of seconds later, in the middle of a before/after comparison
  for (const key of ["net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"]) {
    sh(["ip", "netns", "exec", h.name, "sysctl", "-qw", `${key}=0`])
  }
  return h
}
afterAll(() => hosts.forEach((h) => h.remove()))


const bridgeConf = (h: TestHost): Json => ({
  cniVersion: "1.0.0",
  name: "bwnet",
  type: "bridge",
  bridge: "cni-bw0",
  isGateway: true,
  ipam: { type: "host-local", ranges: [[{ subnet: "10.131.0.0/24" }]], dataDir: h.dir }
})

const bwConf = (prevResult: Json | undefined, limits: Json): Json => ({
  cniVersion: "1.0.0",
  name: "bwnet",
  type: "bandwidth",
  capabilities: { bandwidth: true },
  ...(prevResult === undefined ? {} : { prevResult }),
  ...limits
})

/**
 * Waits until the kernel is done with new links by itself (carrier up, IPv6 link-local
 * address valid), so snapshots taken after it differ only by what the test did.
 */
const settle = (h: TestHost, links: ReadonlyArray<string>) => {
  const settled = (link: string) => {
    const [state] = ipJson<Array<Json>>(h.name, "addr", "show", "dev", link)
    return !(state!.flags as Array<string>).includes("NO-CARRIER") &&
      (state!.addr_info as Array<Json>).some((a) => String(a.local).startsWith("fe80:") && a.tentative !== true)
  }
  for (let i = 0; i < 100; i++) {
    if (links.every(settled)) return
    Bun.sleepSync(50)
  }
  throw new Error(`${links.join(", ")} did not settle`)
}

/** A pod plugged into the test host's bridge by tscni's bridge plugin: what bandwidth is chained after. */
const plugPod = (h: TestHost, id: string) => {
  const pod = freshNetns()
  const add = execIn(h, BRIDGE, podEnv("ADD", id, pod.path), JSON.stringify(bridgeConf(h)))
  if (add.exitCode !== 0) throw new Error(`bridge ADD failed: ${add.stdout}${add.stderr}`)
  const result = add.json!
  const hostVeth = String((result.interfaces as Array<Json>)[1]!.name)
  settle(h, [hostVeth, "cni-bw0"])
  const unplug = () => {
    execIn(h, BRIDGE, podEnv("DEL", id, pod.path), JSON.stringify({ ...bridgeConf(h), prevResult: result }))
    pod.remove()
  }
  return { pod, result, hostVeth, unplug }
}

const tcJson = (ns: string, ...args: ReadonlyArray<string>): Array<Json> => JSON.parse(sh(["ip", "netns", "exec", ns, "tc", "-j", ...args]) || "[]")

/** Every qdisc and ingress filter in a namespace as `tc` shows them (no counters): compared before/after. */
const observeTc = (ns: string): string => {
  const qdiscs = tcJson(ns, "qdisc", "show").map(({ kind, handle, dev, parent, root, options }) => ({ kind, handle, dev, parent, root, options }))
  const filters = qdiscs
    .filter((q) => q.kind === "ingress")
    .map((q) => ({ dev: q.dev, filters: tcJson(ns, "filter", "show", "dev", q.dev, "ingress") }))
  return JSON.stringify({ qdiscs, filters }, null, 1)
}

const mbit = (rate: number): string => `${(rate / MBIT).toFixed(3)} Mbit/s`

describe("bandwidth on the real kernel", () => {
  test("ADD: tbf, ingress qdisc, redirect and ifb as tc sees them; CHECK passes; DEL restores the host", () => {
    const h = host()
    const before = { host: observe(h.name), tc: observeTc(h.name) }
    const pod = plugPod(h, "bw-c1")
    const plugged = { host: observe(h.name), tc: observeTc(h.name) }
    const limits = { ingressRate: MBIT, ingressBurst: BURST, egressRate: 2 * MBIT, egressBurst: 2 * BURST }
    try {
      const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-c1", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
      expect([add.exitCode, add.stderr]).toEqual([0, ""])
      const ifb = (add.json!.interfaces as Array<Json>)[3]!
      expect(ifb.name).toMatch(/^bwp[0-9a-f]{12}$/)
      expect((add.json!.interfaces as Array<Json>).slice(0, 3)).toEqual(pod.result.interfaces as Array<Json>)
      expect(add.json!.ips).toEqual(pod.result.ips)

      // observed with iproute2, not with tscni
      const [ifbLink] = ipJson<Array<Json>>(h.name, "-d", "link", "show", ifb.name)
      const [veth] = ipJson<Array<Json>>(h.name, "link", "show", pod.hostVeth)
      expect(ifbLink).toMatchObject({ linkinfo: { info_kind: "ifb" }, mtu: veth!.mtu, address: ifb.mac, ifalias: "tscni:bwnet/bw-c1/eth0" })
      expect(ifbLink!.flags).toContain("UP")
      const qdiscs = tcJson(h.name, "qdisc", "show")
      // tc reports rate in bytes/s and burst in bytes; it shows the limit as the latency it
      // means: 25 ms, i.e. limit = 25 ms at the rate + the burst
      expect(qdiscs).toContainEqual(expect.objectContaining({
        kind: "tbf", handle: "1:", dev: pod.hostVeth, root: true, options: expect.objectContaining({ rate: 125_000, lat: 25_000 })
      }))
      expect(qdiscs).toContainEqual(expect.objectContaining({ kind: "ingress", handle: "ffff:", dev: pod.hostVeth }))
      expect(qdiscs).toContainEqual(expect.objectContaining({
        kind: "tbf", handle: "1:", dev: ifb.name, root: true, options: expect.objectContaining({ rate: 250_000, burst: 25_000, lat: 25_000 })
      }))
      const tbf = qdiscs.find((q) => q.dev === pod.hostVeth && q.kind === "tbf")!
      expect(Math.abs(tbf.options.burst - BURST / 8)).toBeLessThanOrEqual(2)
      const actions = tcJson(h.name, "filter", "show", "dev", pod.hostVeth, "ingress").flatMap((f) => f.options?.actions ?? [])
      expect(actions).toEqual([expect.objectContaining({ kind: "mirred", mirred_action: "redirect", direction: "egress", to_dev: ifb.name })])

      const check = execIn(h, BANDWIDTH, podEnv("CHECK", "bw-c1", pod.pod.path), JSON.stringify(bwConf(add.json, limits)))
      expect([check.exitCode, check.stdout]).toEqual([0, ""])

      for (let i = 0; i < 2; i++) {
        const del = execIn(h, BANDWIDTH, podEnv("DEL", "bw-c1", pod.pod.path), JSON.stringify(bwConf(add.json, limits)))
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
        expect({ host: observe(h.name), tc: observeTc(h.name) }).toEqual(plugged)
      }
    } finally {
      pod.unplug()
    }
    expect({ host: observe(h.name), tc: observeTc(h.name) }).toEqual(before)
  })

  test("egress: a 1 Mbit/s limit holds a real TCP transfer from the pod to about 1 Mbit/s", async () => {
    const h = host()
    const pod = plugPod(h, "bw-eg")
    try {
      const unshaped = await measure(h.dir, pod.pod.name, h.name, GATEWAY, 5101)
      const limits = { egressRate: MBIT, egressBurst: BURST }
      const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-eg", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
      expect(add.exitCode).toBe(0)
      const shaped = await measure(h.dir, pod.pod.name, h.name, GATEWAY, 5102)
      console.log(`egress: unshaped ${mbit(unshaped)}, shaped to 1 Mbit/s: ${mbit(shaped)}`)
      expect(unshaped).toBeGreaterThan(10 * MBIT)
      expect(shaped).toBeGreaterThan(0.6 * MBIT)
      expect(shaped).toBeLessThan(1.6 * MBIT)
      expect(execIn(h, BANDWIDTH, podEnv("DEL", "bw-eg", pod.pod.path), JSON.stringify(bwConf(add.json, limits))).exitCode).toBe(0)
      const after = await measure(h.dir, pod.pod.name, h.name, GATEWAY, 5103)
      expect(after).toBeGreaterThan(10 * MBIT)
    } finally {
      pod.unplug()
    }
  }, 30_000)

  test("ingress: a 1 Mbit/s limit holds a real TCP transfer to the pod to about 1 Mbit/s", async () => {
    const h = host()
    const pod = plugPod(h, "bw-in")
    try {
      const unshaped = await measure(h.dir, h.name, pod.pod.name, POD_IP, 5201)
      const limits = { ingressRate: MBIT, ingressBurst: BURST }
      const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-in", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
      expect(add.exitCode).toBe(0)
      const shaped = await measure(h.dir, h.name, pod.pod.name, POD_IP, 5202)
      console.log(`ingress: unshaped ${mbit(unshaped)}, shaped to 1 Mbit/s: ${mbit(shaped)}`)
      expect(unshaped).toBeGreaterThan(10 * MBIT)
      expect(shaped).toBeGreaterThan(0.6 * MBIT)
      expect(shaped).toBeLessThan(1.6 * MBIT)
      expect(execIn(h, BANDWIDTH, podEnv("DEL", "bw-in", pod.pod.path), JSON.stringify(bwConf(add.json, limits))).exitCode).toBe(0)
    } finally {
      pod.unplug()
    }
  }, 30_000)

  test("containerd's MaxUint32 burst from runtimeConfig: ADD, CHECK (burst as the kernel reports it) and DEL", () => {
    const h = host()
    const pod = plugPod(h, "bw-ctrd")
    const plugged = { host: observe(h.name), tc: observeTc(h.name) }
    try {
      const limits = { runtimeConfig: { bandwidth: { ingressRate: MBIT, ingressBurst: 4294967295, egressRate: 10 * MBIT, egressBurst: 4294967295 } } }
      const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-ctrd", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
      expect([add.exitCode, add.stdout.includes('"code"')]).toEqual([0, false])
      const check = execIn(h, BANDWIDTH, podEnv("CHECK", "bw-ctrd", pod.pod.path), JSON.stringify(bwConf(add.json, limits)))
      expect([check.exitCode, check.stdout]).toEqual([0, ""])
      expect(execIn(h, BANDWIDTH, podEnv("DEL", "bw-ctrd", pod.pod.path), JSON.stringify(bwConf(add.json, limits))).exitCode).toBe(0)
      expect({ host: observe(h.name), tc: observeTc(h.name) }).toEqual(plugged)
    } finally {
      pod.unplug()
    }
  })

  test("CHECK fails once the host veth's tbf is deleted by hand", () => {
    const h = host()
    const pod = plugPod(h, "bw-chk")
    try {
      const limits = { ingressRate: MBIT, ingressBurst: BURST, egressRate: MBIT, egressBurst: BURST }
      const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-chk", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
      expect(add.exitCode).toBe(0)
      sh(["ip", "netns", "exec", h.name, "tc", "qdisc", "del", "dev", pod.hostVeth, "root"])
      const check = execIn(h, BANDWIDTH, podEnv("CHECK", "bw-chk", pod.pod.path), JSON.stringify(bwConf(add.json, limits)))
      expect(check.exitCode).toBe(1)
      expect(String(check.json?.msg)).toContain(pod.hostVeth)
      const changed = execIn(h, BANDWIDTH, podEnv("CHECK", "bw-chk", pod.pod.path), JSON.stringify(bwConf(add.json, { ...limits, ingressRate: 0, ingressBurst: 0, egressRate: 3 * MBIT })))
      expect(changed.exitCode).toBe(1)
      expect(execIn(h, BANDWIDTH, podEnv("DEL", "bw-chk", pod.pod.path), JSON.stringify(bwConf(add.json, limits))).exitCode).toBe(0)
    } finally {
      pod.unplug()
    }
  })

  test("bad limits: code 7 naming the field, nothing changed", () => {
    const h = host()
    const pod = plugPod(h, "bw-bad")
    const plugged = { host: observe(h.name), tc: observeTc(h.name) }
    try {
      for (const [limits, field] of [
        [{ egressRate: MBIT }, "egressBurst"],
        [{ ingressRate: MBIT, ingressBurst: 1000 }, "ingressBurst"]
      ] as const) {
        const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-bad", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
        expect([add.exitCode, add.json?.code]).toEqual([1, 7])
        expect(String(add.json?.msg)).toContain(field)
      }
      expect({ host: observe(h.name), tc: observeTc(h.name) }).toEqual(plugged)
    } finally {
      pod.unplug()
    }
  })

  test("DEL with the pod's namespace gone (and empty), and without ADD: the ifb goes, the host is as before", () => {
    const h = host()
    const before = { host: observe(h.name), tc: observeTc(h.name) }
    const pod = plugPod(h, "bw-gone")
    const limits = { ingressRate: MBIT, ingressBurst: BURST, egressRate: MBIT, egressBurst: BURST }
    const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-gone", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
    expect(add.exitCode).toBe(0)
    // the runtime removes the namespace first: the veth dies with it, the ifb stays until DEL
    pod.pod.remove()
    for (const netns of [pod.pod.path, ""]) {
      const del = execIn(h, BANDWIDTH, podEnv("DEL", "bw-gone", netns), JSON.stringify(bwConf(add.json, limits)))
      expect([netns, del.exitCode, del.stdout]).toEqual([netns, 0, ""])
    }
    expect(execIn(h, BANDWIDTH, podEnv("DEL", "bw-never", ""), JSON.stringify(bwConf(undefined, limits))).exitCode).toBe(0)
    execIn(h, BRIDGE, podEnv("DEL", "bw-gone", pod.pod.path), JSON.stringify({ ...bridgeConf(h), prevResult: pod.result }))
    expect({ host: observe(h.name), tc: observeTc(h.name) }).toEqual(before)
  })

  test("SIGKILL at every Backend call of ADD, then DEL without prevResult (no cached result): the host is as before", async () => {
    const h = host()
    const pod = plugPod(h, "bw-kill")
    const state = () => ({ host: observe(h.name), tc: observeTc(h.name) })
    const plugged = state()
    const limits = { ingressRate: MBIT, ingressBurst: BURST, egressRate: MBIT, egressBurst: BURST }
    try {
      // the ADD runs through fault-driver.ts, which stops itself right before Backend call k:
      // the same bandwidth code on the same LinuxBackend as dist/bin/bandwidth, so a SIGKILL
      // there is a SIGKILL of the plugin at that call
      const { ops, left } = await kernelKillSweep(
        (k) => spawnIn(h, ["bun", DRIVER, "bandwidth", String(k), "pause"], podEnv("ADD", "bw-kill", pod.pod.path), JSON.stringify(bwConf(pod.result, limits))),
        (k) => {
          const del = execIn(h, BANDWIDTH, podEnv("DEL", "bw-kill", pod.pod.path), JSON.stringify(bwConf(undefined, limits)))
          expect({ k, code: del.exitCode }).toEqual({ k, code: 0 })
        },
        (k) => expect({ k, ...state() }).toEqual({ k, ...plugged }),
        () => JSON.stringify(state()) !== JSON.stringify(plugged)
      )
      // the kills fell on the calls that shape both ways (tbf on the host veth; the ifb, its
      // tbf, the ingress qdisc and the redirect), and every kill from the first change on
      // left DEL something to undo
      expect(ops).toEqual(expect.arrayContaining(["addQdisc", "createLink", "addRedirect"]))
      const firstChange = ops.findIndex((op) => op.startsWith("add") || op.startsWith("create") || op.startsWith("set")) + 1
      expect(left).toEqual(ops.map((_, i) => i + 1).filter((k) => k > firstChange))
    } finally {
      pod.unplug()
    }
  }, 120_000)

  test("GC removes the ifb of an attachment the runtime no longer lists", () => {
    const h = host()
    const pod = plugPod(h, "bw-gc")
    try {
      const limits = { egressRate: MBIT, egressBurst: BURST }
      const add = execIn(h, BANDWIDTH, podEnv("ADD", "bw-gc", pod.pod.path), JSON.stringify(bwConf(pod.result, limits)))
      expect(add.exitCode).toBe(0)
      const ifb = String((add.json!.interfaces as Array<Json>)[3]!.name)
      const gc = (valid: Array<Json>) =>
        execIn(h, BANDWIDTH, { CNI_COMMAND: "GC", CNI_PATH: BIN_DIR }, JSON.stringify({ cniVersion: "1.1.0", name: "bwnet", type: "bandwidth", "cni.dev/valid-attachments": valid }))
      expect(gc([{ containerID: "bw-gc", ifname: "eth0" }]).exitCode).toBe(0)
      expect(ipJson<Array<Json>>(h.name, "link", "show", "type", "ifb").map((l) => l.ifname)).toEqual([ifb])
      expect(gc([]).exitCode).toBe(0)
      expect(ipJson<Array<Json>>(h.name, "link", "show", "type", "ifb")).toEqual([])
      const status = execIn(h, BANDWIDTH, { CNI_COMMAND: "STATUS", CNI_PATH: BIN_DIR }, JSON.stringify({ cniVersion: "1.1.0", name: "bwnet", type: "bandwidth" }))
      expect([status.exitCode, status.stdout]).toEqual([0, ""])
    } finally {
      pod.unplug()
    }
  })
})
