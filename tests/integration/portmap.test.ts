import { afterAll, describe, expect, test } from "bun:test"
import { binary, kernelFaultSweep, freshNetns, podEnv } from "./harness.ts"
import { resolve } from "node:path"
import { fetchIn, serveIn } from "./traffic.ts"
import { execIn, freshHost, hostSysctls, iptablesState, observe, observeAfterDel, restoreHostSysctls, settle, type TestHost } from "./hostns.ts"

const DRIVER = resolve(import.meta.dir, "fault-driver.ts")

const BRIDGE = binary("bridge")
const PORTMAP = binary("portmap")
const REFERENCE_PORTMAP = "/usr/lib/cni/portmap"
const REFERENCE_BRIDGE = "/usr/lib/cni/bridge"

type Json = Record<string, any>

const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

const bridgeConf = (h: TestHost, extra: Json = {}): Json => ({
  cniVersion: "1.0.0",
  name: "pmnet",
  type: "bridge",
  bridge: "cni-pm0",
  isGateway: true,
  isDefaultGateway: true,
  ipMasq: true,
  hairpinMode: true,
  ipam: { type: "host-local", ranges: [[{ subnet: "10.125.0.0/24" }]], dataDir: h.dir },
  ...extra
})
const portmapConf = (mappings: Array<Json>, prevResult: Json | undefined, extra: Json = {}): Json => ({
  cniVersion: "1.0.0",
  name: "pmnet",
  type: "portmap",
  capabilities: { portMappings: true },
  runtimeConfig: { portMappings: mappings },
  ...(prevResult ? { prevResult } : {}),
  ...extra
})


/** Extra keys for a host that needs iptables: the bridge's masquerade and portmap's rules both there. */
interface Mode {
  readonly bridge?: Json
  readonly portmap?: Json
}

const addPod = (h: TestHost, id: string, netns: string, mappings: Array<Json>, portmap = PORTMAP, bridge = BRIDGE, mode: Mode = {}) => {
  const b = execIn(h, bridge, podEnv("ADD", id, netns), JSON.stringify(bridgeConf(h, mode.bridge)))
  expect([b.exitCode, b.stderr]).toEqual([0, ""])
  const p = execIn(h, portmap, podEnv("ADD", id, netns), JSON.stringify(portmapConf(mappings, b.json, mode.portmap)))
  expect([p.exitCode, p.stderr]).toEqual([0, ""])
  // a chained plugin passes prevResult on (the reference portmap adds an empty dns: {})
  expect({ ...p.json, dns: undefined }).toEqual({ ...b.json, dns: undefined })
  return p.json!
}
const delPod = (h: TestHost, id: string, netns: string, result: Json, mappings: Array<Json>, portmap = PORTMAP, bridge = BRIDGE, mode: Mode = {}) => {
  expect(execIn(h, portmap, podEnv("DEL", id, netns), JSON.stringify(portmapConf(mappings, result, mode.portmap))).exitCode).toBe(0)
  expect(execIn(h, bridge, podEnv("DEL", id, netns), JSON.stringify({ ...bridgeConf(h, mode.bridge), prevResult: result })).exitCode).toBe(0)
}

/** Runs a command in a test namespace (never on the real host); throws when it fails. */
const inNetns = (netns: string, ...argv: Array<string>): string => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, ...argv], { stdout: "pipe", stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${out.stderr.toString()}`)
  return out.stdout.toString()
}

/** observe() without nft's listing: with iptables-nft, iptables tables show up there too (see iptablesState). */
const observeHost = (netns: string): string => {
  const { nft: _nft, ...rest } = JSON.parse(observe(netns)) as Json
  return JSON.stringify(rest)
}

/** A view of the host once IPv6 duplicate address detection is over (a new link's fe80:: address adds a local route when it is). */
const settled = (netns: string, view: () => string): string => {
  for (let i = 0; i < 50; i++) {
    const addresses = JSON.parse(inNetns(netns, "ip", "-j", "addr", "show")) as Array<{ addr_info: Array<Json> }>
    if (!addresses.some((link) => link.addr_info.some((address) => address.tentative === true))) break
    Bun.sleepSync(100)
  }
  return view()
}

/**
 * kernelFaultSweep of one portmap ADD (conf as sent): after each failed run the host
 * (links, addresses, routes, tc, VLANs, nftables ruleset) and its sysctls (route_localnet
 * of the bridge) must be as before. A run that tolerated its fault is deleted, and the
 * sysctls its DEL leaves on purpose (the bridge is shared) are put back.
 */
const portmapFaultSweep = (h: TestHost, p: { path: string }, id: string, conf: string): number => {
  const before = { host: settled(h.name, () => observe(h.name)), sysctls: hostSysctls(h.name) }
  return kernelFaultSweep(
    (k) => execIn(h, ["bun", DRIVER, "portmap", String(k)], podEnv("ADD", id, p.path), conf),
    () => {
      expect(execIn(h, PORTMAP, podEnv("DEL", id, p.path), conf).exitCode).toBe(0)
      restoreHostSysctls(h.name, before.sysctls)
    },
    (k) => expect({ k, host: observe(h.name), sysctls: hostSysctls(h.name) }).toEqual({ k, ...before })
  )
}

const IPTABLES: Mode = { bridge: { ipMasqBackend: "iptables" }, portmap: { backend: "iptables" } }

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
    await serveIn(cleanups, p1.name, 80, "hello from pod 1")

    expect(fetchIn(h.name, "http://127.0.0.1:8080/")).toBe("hello from pod 1")
    expect(fetchIn(h.name, "http://10.125.0.1:8080/")).toBe("hello from pod 1")
    expect(fetchIn(p2.name, "http://10.125.0.1:8080/")).toBe("hello from pod 1")
    expect(fetchIn(p1.name, "http://10.125.0.1:8080/")).toBe("hello from pod 1")

    const check = execIn(h, PORTMAP, podEnv("CHECK", "pm-c1", p1.path), JSON.stringify(portmapConf(mappings, r1)))
    expect([check.exitCode, check.stdout]).toEqual([0, ""])
    // the mapping is an element of the network's hostPort map, owned by the pod (nft's view)
    const mapped = /tcp \. 8080 comment "pm:[0-9a-f]{8}:[0-9a-f]{12}" : 10\.125\.0\.2 \. 80/
    expect(inNetns(h.name, "nft", "list", "ruleset")).toMatch(mapped)

    delPod(h, "pm-c1", p1.path, r1, mappings)
    expect(fetchIn(h.name, "http://10.125.0.1:8080/")).toStartWith("failed")
    expect(inNetns(h.name, "nft", "list", "ruleset")).not.toMatch(mapped)
    delPod(h, "pm-c2", p2.path, r2, [])
    // route_localnet on the (now deleted) bridge went with it: the host is as it was, but for
    // the network's tables, left empty
    expect(observeAfterDel(h.name)).toBe(before)
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
    const bridged = execIn(h, BRIDGE, podEnv("ADD", "pm-fault", p.path), JSON.stringify(bridgeConf(h)))
    expect(bridged.exitCode).toBe(0)
    const conf = JSON.stringify(portmapConf(mappings, bridged.json))
    expect(portmapFaultSweep(h, p, "pm-fault", conf)).toBeGreaterThan(2)
    p.remove()
  }, 120_000)

  test("backend nftables, second pod, dual stack, hostIP and conditions: a fault at every kernel call of ADD leaves the host and the first pod's mapping as they were", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const first = freshNetns()
    const p = freshNetns()
    const dual: Json = { ipam: { type: "host-local", ranges: [[{ subnet: "10.125.1.0/24" }], [{ subnet: "fd12:3460::/64" }]], dataDir: h.dir } }
    const nftables = { backend: "nftables", conditionsV4: ["ip saddr != 203.0.113.0/24"], conditionsV6: ["ip6 saddr != 2001:db8:1::/48"] }
    const firstMappings = [{ hostPort: 8096, containerPort: 80, protocol: "tcp" }]
    const r1 = addPod(h, "pmn-c1", first.path, firstMappings, PORTMAP, BRIDGE, { bridge: dual, portmap: nftables })
    const mappings = [
      { hostPort: 8093, containerPort: 80, protocol: "tcp" },
      { hostPort: 8094, containerPort: 80, protocol: "tcp", hostIP: "10.125.1.1" },
      { hostPort: 8095, containerPort: 80, protocol: "tcp", hostIP: "fd12:3460::1" },
      { hostPort: 5356, containerPort: 53, protocol: "udp" }
    ]
    const bridged = execIn(h, BRIDGE, podEnv("ADD", "pmn-c2", p.path), JSON.stringify(bridgeConf(h, dual)))
    expect(bridged.exitCode).toBe(0)
    settle(h.name)
    const conf = JSON.stringify(portmapConf(mappings, bridged.json, nftables))
    expect(portmapFaultSweep(h, p, "pmn-c2", conf)).toBeGreaterThan(2)
    // the first pod's mapping still answers; the second pod's, added for real, on both families
    await serveIn(cleanups, first.name, 80, "first")
    await serveIn(cleanups, p.name, 80, "second", "::")
    expect(fetchIn(h.name, "http://10.125.1.1:8096/")).toBe("first")
    expect(execIn(h, PORTMAP, podEnv("ADD", "pmn-c2", p.path), conf).exitCode).toBe(0)
    expect([fetchIn(h.name, "http://10.125.1.1:8094/"), fetchIn(h.name, "http://[fd12:3460::1]:8095/")]).toEqual(["second", "second"])
    expect(inNetns(h.name, "nft", "list", "ruleset")).toContain("ip saddr != 203.0.113.0/24")
    delPod(h, "pmn-c2", p.path, bridged.json!, mappings, PORTMAP, BRIDGE, { bridge: dual, portmap: nftables })
    delPod(h, "pmn-c1", first.path, r1, firstMappings, PORTMAP, BRIDGE, { bridge: dual, portmap: nftables })
    first.remove()
    p.remove()
  }, 120_000)

  test("the reference portmap after our bridge, and our portmap after the reference bridge", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const mappings = [{ hostPort: 8081, containerPort: 80, protocol: "tcp" }]
    for (const [portmap, bridge, label] of [[REFERENCE_PORTMAP, BRIDGE, "ref portmap"], [PORTMAP, REFERENCE_BRIDGE, "ref bridge"]] as const) {
      const p = freshNetns()
      const result = addPod(h, `pm-mix-${label.replace(" ", "-")}`, p.path, mappings, portmap, bridge)
      const server = await serveIn(cleanups, p.name, 80, `hello ${label}`)
      expect(fetchIn(h.name, "http://10.125.0.1:8081/")).toBe(`hello ${label}`)
      server.kill()
      delPod(h, `pm-mix-${label.replace(" ", "-")}`, p.path, result, mappings, portmap, bridge)
      p.remove()
    }
  }, 60_000)

  test("backend iptables: a hostPort reaches the pod from the host, another pod and the pod itself; others' rules untouched; DEL restores iptables-save", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    // someone else's rules in the same table and chain (kube-proxy, say)
    inNetns(h.name, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "MASQUERADE")
    inNetns(h.name, "ip6tables", "-t", "nat", "-A", "POSTROUTING", "-s", "2001:db8::/32", "-j", "MASQUERADE")
    const p1 = freshNetns()
    const p2 = freshNetns()
    const before = { host: observeHost(h.name), iptables: iptablesState(h.name) }
    const mappings = [{ hostPort: 8090, containerPort: 80, protocol: "tcp" }]
    const r1 = addPod(h, "pmi-c1", p1.path, mappings, PORTMAP, BRIDGE, IPTABLES)
    const r2 = addPod(h, "pmi-c2", p2.path, [], PORTMAP, BRIDGE, IPTABLES)
    await serveIn(cleanups, p1.name, 80, "hello over iptables")

    // observed with iptables-save, not with tscni
    const nat = inNetns(h.name, "iptables-save", "-t", "nat")
    expect(nat).toContain("-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment tscni -j TSCNI-HOSTPORTS")
    expect(nat).toContain("-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment tscni -j TSCNI-HOSTPORTS")
    // the pod's own chains, entered by a jump carrying its owner
    expect(nat).toMatch(/-A TSCNI-HOSTPORTS -m comment --comment "?pm:[0-9a-f]{8}:[0-9a-f]{12}"? -j TSCNI-HP-[0-9A-F]{12}\n/)
    expect(nat).toMatch(/-A TSCNI-HP-[0-9A-F]{12} -p tcp -m tcp --dport 8090 -j DNAT --to-destination 10\.125\.0\.2:80/)
    expect(nat).toContain("-j MARK --set-xmark 0x2000/0x2000")
    expect(nat).toMatch(/-A TSCNI-HPM-[0-9A-F]{12} -d 10\.125\.0\.2\/32 -m mark --mark 0x2000\/0x2000 -j MASQUERADE/)
    expect(nat).toMatch(/-A TSCNI-M-[0-9A-F]{12} -s 10\.125\.0\.2\/32 ! -d 224\.0\.0\.0\/4 -j MASQUERADE/)
    // nothing of tscni's in nftables' own tables
    expect(inNetns(h.name, "nft", "list", "tables")).not.toContain("tscni")

    expect(fetchIn(h.name, "http://127.0.0.1:8090/")).toBe("hello over iptables")
    expect(fetchIn(h.name, "http://10.125.0.1:8090/")).toBe("hello over iptables")
    expect(fetchIn(p2.name, "http://10.125.0.1:8090/")).toBe("hello over iptables")
    expect(fetchIn(p1.name, "http://10.125.0.1:8090/")).toBe("hello over iptables")

    const check = execIn(h, PORTMAP, podEnv("CHECK", "pmi-c1", p1.path), JSON.stringify(portmapConf(mappings, r1, IPTABLES.portmap)))
    expect([check.exitCode, check.stdout]).toEqual([0, ""])

    delPod(h, "pmi-c1", p1.path, r1, mappings, PORTMAP, BRIDGE, IPTABLES)
    expect(fetchIn(h.name, "http://10.125.0.1:8090/")).toStartWith("failed")
    expect(inNetns(h.name, "iptables-save", "-t", "nat")).not.toMatch(/TSCNI-HPM?-[0-9A-F]{12}/)
    delPod(h, "pmi-c2", p2.path, r2, [], PORTMAP, BRIDGE, IPTABLES)
    // as before, but for the shared chains (empty) the first pod made
    expect({ host: observeHost(h.name), iptables: iptablesState(h.name, { withoutEmptyChains: true }) }).toEqual(before)
    expect(iptablesState(h.name)).toContain("-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE")
    p1.remove()
    p2.remove()
  }, 60_000)

  test("backend iptables with externalSetMarkChain: marking is left to that chain (KUBE-MARK-MASQ) and its owner masquerades", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    // what kube-proxy has: a chain that sets bit 14, and a masquerade of marked connections
    for (const tool of ["iptables", "ip6tables"]) {
      inNetns(h.name, tool, "-t", "nat", "-N", "KUBE-MARK-MASQ")
      inNetns(h.name, tool, "-t", "nat", "-A", "KUBE-MARK-MASQ", "-j", "MARK", "--set-xmark", "0x4000/0x4000")
      inNetns(h.name, tool, "-t", "nat", "-A", "POSTROUTING", "-m", "mark", "--mark", "0x4000/0x4000", "-j", "MASQUERADE")
    }
    const p1 = freshNetns()
    const before = iptablesState(h.name)
    const mappings = [{ hostPort: 8091, containerPort: 80, protocol: "tcp" }]
    const mode: Mode = { bridge: { ipMasqBackend: "iptables" }, portmap: { externalSetMarkChain: "KUBE-MARK-MASQ" } }
    const r1 = addPod(h, "pmk-c1", p1.path, mappings, PORTMAP, BRIDGE, mode)
    await serveIn(cleanups, p1.name, 80, "hello via kube's mark")
    const nat = inNetns(h.name, "iptables-save", "-t", "nat")
    expect(nat).toMatch(/-A TSCNI-HP-[0-9A-F]{12} -s 127\.0\.0\.0\/8 -p tcp .*--dport 8091 -j KUBE-MARK-MASQ/)
    expect(nat).not.toContain("TSCNI-HP-MASQ")
    expect(nat).not.toContain("TSCNI-HPM-")
    expect(fetchIn(h.name, "http://127.0.0.1:8091/")).toBe("hello via kube's mark")
    expect(fetchIn(p1.name, "http://10.125.0.1:8091/")).toBe("hello via kube's mark")
    delPod(h, "pmk-c1", p1.path, r1, mappings, PORTMAP, BRIDGE, mode)
    expect(iptablesState(h.name, { withoutEmptyChains: true })).toBe(before)
    p1.remove()
  }, 60_000)

  test("backend iptables: a fault at every kernel call of portmap ADD leaves the host and its iptables as they were", () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const p = freshNetns()
    const mappings = [{ hostPort: 8092, containerPort: 80, protocol: "tcp" }, { hostPort: 5355, containerPort: 53, protocol: "udp" }]
    const bridged = execIn(h, BRIDGE, podEnv("ADD", "pmi-fault", p.path), JSON.stringify(bridgeConf(h, IPTABLES.bridge)))
    expect(bridged.exitCode).toBe(0)
    const conf = JSON.stringify(portmapConf(mappings, bridged.json, IPTABLES.portmap))
    const before = { host: settled(h.name, () => observeHost(h.name)), iptables: iptablesState(h.name) }
    const faults = kernelFaultSweep(
      (k) => execIn(h, ["bun", DRIVER, "portmap", String(k)], podEnv("ADD", "pmi-fault", p.path), conf),
      () => expect(execIn(h, PORTMAP, podEnv("DEL", "pmi-fault", p.path), conf).exitCode).toBe(0),
      (k) => {
        expect({ k, host: observeHost(h.name) }).toEqual({ k, host: before.host })
        expect({ k, iptables: iptablesState(h.name).split("\n") }).toEqual({ k, iptables: before.iptables.split("\n") })
      }
    )
    expect(faults).toBeGreaterThan(2)
    expect(execIn(h, BRIDGE, podEnv("DEL", "pmi-fault", p.path), JSON.stringify({ ...bridgeConf(h, IPTABLES.bridge), prevResult: bridged.json })).exitCode).toBe(0)
    p.remove()
  }, 120_000)
})
