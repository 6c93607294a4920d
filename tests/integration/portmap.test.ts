import { afterAll, describe, expect, test } from "bun:test"
import { BIN_DIR, binary, freshNetns } from "./harness.ts"
import { resolve } from "node:path"
import { execIn, freshHost, observe, type TestHost } from "./hostns.ts"

const DRIVER = resolve(import.meta.dir, "fault-driver.ts")

const BRIDGE = binary("bridge")
const PORTMAP = binary("portmap")
const REFERENCE_PORTMAP = "/usr/lib/cni/portmap"
const REFERENCE_BRIDGE = "/usr/lib/cni/bridge"

type Json = Record<string, any>

const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

const bridgeConf = (h: TestHost): Json => ({
  cniVersion: "1.0.0",
  name: "pmnet",
  type: "bridge",
  bridge: "cni-pm0",
  isGateway: true,
  isDefaultGateway: true,
  ipMasq: true,
  hairpinMode: true,
  ipam: { type: "host-local", ranges: [[{ subnet: "10.125.0.0/24" }]], dataDir: h.dir }
})
const portmapConf = (mappings: Array<Json>, prevResult: Json | undefined): Json => ({
  cniVersion: "1.0.0",
  name: "pmnet",
  type: "portmap",
  capabilities: { portMappings: true },
  runtimeConfig: { portMappings: mappings },
  ...(prevResult ? { prevResult } : {})
})
const env = (command: string, id: string, netns: string) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: id,
  CNI_NETNS: netns,
  CNI_IFNAME: "eth0",
  CNI_PATH: BIN_DIR
})

/** A small HTTP server inside a namespace, ended by PID when the file's tests end. */
const serveIn = async (netns: string, port: number, body: string) => {
  const proc = Bun.spawn(["ip", "netns", "exec", netns, "bun", "-e",
    `Bun.serve({ port: ${port}, hostname: "0.0.0.0", fetch: () => new Response(${JSON.stringify(body)}) }); console.log("ready")`
  ], { stdout: "pipe", stderr: "pipe" })
  cleanups.push(() => proc.kill())
  const reader = proc.stdout.getReader()
  await reader.read() // "ready"
  return proc
}

/** GET from inside a namespace (bounded: one request, 3 s). */
const fetchIn = (netns: string, url: string): string => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "bun", "-e",
    `const r = await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }); console.log(await r.text())`
  ], { stdout: "pipe", stderr: "pipe" })
  return out.exitCode === 0 ? out.stdout.toString().trim() : `failed: ${out.stderr.toString().split("\n")[0]}`
}

const addPod = (h: TestHost, id: string, netns: string, mappings: Array<Json>, portmap = PORTMAP, bridge = BRIDGE) => {
  const b = execIn(h, bridge, env("ADD", id, netns), JSON.stringify(bridgeConf(h)))
  expect([b.exitCode, b.stderr]).toEqual([0, ""])
  const p = execIn(h, portmap, env("ADD", id, netns), JSON.stringify(portmapConf(mappings, b.json)))
  expect([p.exitCode, p.stderr]).toEqual([0, ""])
  // a chained plugin passes prevResult on (the reference portmap adds an empty dns: {})
  expect({ ...p.json, dns: undefined }).toEqual({ ...b.json, dns: undefined })
  return p.json!
}
const delPod = (h: TestHost, id: string, netns: string, result: Json, mappings: Array<Json>, portmap = PORTMAP, bridge = BRIDGE) => {
  expect(execIn(h, portmap, env("DEL", id, netns), JSON.stringify(portmapConf(mappings, result))).exitCode).toBe(0)
  expect(execIn(h, bridge, env("DEL", id, netns), JSON.stringify({ ...bridgeConf(h), prevResult: result })).exitCode).toBe(0)
}

describe("portmap on the real kernel", () => {
  test("a hostPort reaches the pod from the host (127.0.0.1 and the bridge address), another pod and the pod itself", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const p1 = freshNetns()
    const p2 = freshNetns()
    const before = observe(h.name)
    const mappings = [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }]
    const r1 = addPod(h, "pm-c1", p1.path, mappings)
    const r2 = addPod(h, "pm-c2", p2.path, [])
    await serveIn(p1.name, 80, "hello from pod 1")

    expect(fetchIn(h.name, "http://127.0.0.1:8080/")).toBe("hello from pod 1")
    expect(fetchIn(h.name, "http://10.125.0.1:8080/")).toBe("hello from pod 1")
    expect(fetchIn(p2.name, "http://10.125.0.1:8080/")).toBe("hello from pod 1")
    expect(fetchIn(p1.name, "http://10.125.0.1:8080/")).toBe("hello from pod 1")

    const check = execIn(h, PORTMAP, env("CHECK", "pm-c1", p1.path), JSON.stringify(portmapConf(mappings, r1)))
    expect([check.exitCode, check.stdout]).toEqual([0, ""])

    delPod(h, "pm-c1", p1.path, r1, mappings)
    expect(fetchIn(h.name, "http://10.125.0.1:8080/")).toStartWith("failed")
    delPod(h, "pm-c2", p2.path, r2, [])
    const after = observe(h.name)
    // route_localnet on the (now deleted) bridge went with it: the host is as it was
    expect(after).toBe(before)
    p1.remove()
    p2.remove()
  }, 60_000)

  test("ADD forgets stale UDP flows to the new host port", () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const p1 = freshNetns()
    const p2 = freshNetns()
    const r2 = addPod(h, "pm-udp2", p2.path, [])
    // a flow to the host port before it is mapped: tracked un-NATed
    Bun.spawnSync(["ip", "netns", "exec", p2.name, "bash", "-c", "echo x > /dev/udp/10.125.0.1/5353"])
    const flows = () =>
      Bun.spawnSync(["ip", "netns", "exec", h.name, "conntrack", "-L", "-p", "udp", "--dport", "5353"], { stderr: "pipe" })
        .stdout.toString().split("\n").filter((line) => line.includes("udp")).length
    expect(flows()).toBe(1)
    const mappings = [{ hostPort: 5353, containerPort: 53, protocol: "udp" }]
    const r1 = addPod(h, "pm-udp1", p1.path, mappings)
    expect(flows()).toBe(0)
    delPod(h, "pm-udp1", p1.path, r1, mappings)
    delPod(h, "pm-udp2", p2.path, r2, [])
    p1.remove()
    p2.remove()
  })

  test("a fault at every kernel call of portmap ADD leaves the host as it was", () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const p = freshNetns()
    const mappings = [{ hostPort: 8082, containerPort: 80, protocol: "tcp" }, { hostPort: 5354, containerPort: 53, protocol: "udp" }]
    const bridged = execIn(h, BRIDGE, env("ADD", "pm-fault", p.path), JSON.stringify(bridgeConf(h)))
    expect(bridged.exitCode).toBe(0)
    const before = observe(h.name)
    let faults = 0
    for (let k = 1; k < 100; k++) {
      const run = execIn(h, ["bun", DRIVER, "portmap", String(k)], env("ADD", "pm-fault", p.path), JSON.stringify(portmapConf(mappings, bridged.json)))
      const calls = Number(/calls=(\d+)/.exec(run.stderr)?.[1] ?? -1)
      if (run.exitCode === 0) {
        execIn(h, PORTMAP, env("DEL", "pm-fault", p.path), JSON.stringify(portmapConf(mappings, bridged.json)))
        if (calls < k) break
        continue
      }
      faults++
      expect({ k, host: observe(h.name) }).toEqual({ k, host: before })
    }
    expect(faults).toBeGreaterThan(2)
    p.remove()
  }, 120_000)

  test("the reference portmap after our bridge, and our portmap after the reference bridge", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const mappings = [{ hostPort: 8081, containerPort: 80, protocol: "tcp" }]
    for (const [portmap, bridge, label] of [[REFERENCE_PORTMAP, BRIDGE, "ref portmap"], [PORTMAP, REFERENCE_BRIDGE, "ref bridge"]] as const) {
      const p = freshNetns()
      const result = addPod(h, `pm-mix-${label.replace(" ", "-")}`, p.path, mappings, portmap, bridge)
      const server = await serveIn(p.name, 80, `hello ${label}`)
      expect(fetchIn(h.name, "http://10.125.0.1:8081/")).toBe(`hello ${label}`)
      server.kill()
      delPod(h, `pm-mix-${label.replace(" ", "-")}`, p.path, result, mappings, portmap, bridge)
      p.remove()
    }
  }, 60_000)
})
