import { afterAll, describe, expect, test } from "bun:test"
import { BIN_DIR, binary, freshNetns, podEnv } from "./harness.ts"
import { execIn, freshHost, observe, observeAfterDel, type TestHost, withoutEmptyTables } from "./hostns.ts"

const BRIDGE = binary("bridge")
const FIREWALL = binary("firewall")
const TUNING = binary("tuning")
binary("host-local")

type Json = Record<string, any>

const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

/** A fresh namespace, removed at the end of the file whatever happened (removing twice is fine). */
const netns = () => {
  const ns = freshNetns()
  cleanups.push(ns.remove)
  return ns
}

/** A test host with an unrelated nftables table of its own, which must survive everything. */
const host = (): TestHost => {
  const h = freshHost()
  cleanups.push(h.remove)
  nftIn(h.name, "add table inet admin\nadd chain inet admin screen { type filter hook forward priority 10 ; }\nadd rule inet admin screen ip daddr 192.0.2.99 drop")
  return h
}

/** The test host's whole nftables ruleset, as nft prints it. */
const ruleset = (h: TestHost): string => Bun.spawnSync(["ip", "netns", "exec", h.name, "nft", "list", "ruleset"]).stdout.toString()

const nftIn = (netns: string, script: string): void => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "nft", "-f", "-"], { stdin: Buffer.from(script), stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`nft: ${out.stderr.toString()}`)
}

/** What `nft -j list ruleset` shows of the firewall's tables (tscni-fw-*) in the test host. */
const firewallTables = (h: TestHost): Array<Json> => {
  const out = Bun.spawnSync(["ip", "netns", "exec", h.name, "nft", "-j", "list", "ruleset"]).stdout.toString()
  return ((JSON.parse(out) as Json).nftables as Array<Json>).filter((item) => {
    const body = item.set ?? item.chain ?? item.rule
    return body !== undefined && String(body.table).startsWith("tscni-fw-")
  })
}

/** The pods' addresses in the firewall's sets, with their owners, as nft shows them. */
const firewallElements = (h: TestHost): Array<{ set: string; address: string; comment: string; table: string }> =>
  firewallTables(h).filter((item) => item.set !== undefined).flatMap((item) =>
    ((item.set.elem ?? []) as Array<Json | string>).map((elem) => {
      const value = typeof elem === "string" ? { val: elem } : (elem as Json).elem as Json
      return { set: item.set.name, address: String(value.val), comment: String(value.comment ?? ""), table: item.set.table }
    })
  )

/** The firewall tables' chains (name, type, hook, priority, policy), and their rules with handles. */
const chainsOf = (h: TestHost): Array<Json> => firewallTables(h).filter((item) => item.chain !== undefined).map((item) => item.chain)
const rulesOf = (h: TestHost): Array<{ table: string; chain: string; handle: number; text: string }> =>
  firewallTables(h).filter((item) => item.rule !== undefined).map((item) => ({
    table: item.rule.table,
    chain: item.rule.chain,
    handle: item.rule.handle,
    text: JSON.stringify(item.rule.expr)
  }))

interface Net {
  readonly name: string
  readonly bridge: string
  readonly subnet: string
}
const NET_A: Net = { name: "fwa", bridge: "cni-fwa", subnet: "10.126.0.0/24" }
const NET_B: Net = { name: "fwb", bridge: "cni-fwb", subnet: "10.127.0.0/24" }

const bridgeConf = (h: TestHost, net: Net, version = "1.0.0"): Json => ({
  cniVersion: version,
  name: net.name,
  type: "bridge",
  bridge: net.bridge,
  isGateway: true,
  isDefaultGateway: true,
  ipam: { type: "host-local", ranges: [[{ subnet: net.subnet }]], dataDir: h.dir }
})

const firewallConf = (net: Net, extra: Json = {}, version = "1.0.0"): Json => ({
  cniVersion: version,
  name: net.name,
  type: "firewall",
  backend: "",
  ...extra
})


/** A pod on a bridge network (the bridge plugin's ADD), removed with the test file. */
const bridgePod = (h: TestHost, net: Net, id: string, version = "1.0.0") => {
  const ns = netns()
  const add = execIn(h, BRIDGE, podEnv("ADD", id, ns.path), JSON.stringify(bridgeConf(h, net, version)))
  expect([add.exitCode, add.stderr]).toEqual([0, ""])
  const result = add.json!
  const address = String((result.ips as Array<Json>)[0]!.address).split("/")[0]!
  return { id, ns, result, address }
}
type Pod = ReturnType<typeof bridgePod>

const removePod = (h: TestHost, net: Net, pod: Pod, version = "1.0.0") => {
  expect(execIn(h, BRIDGE, podEnv("DEL", pod.id, pod.ns.path), JSON.stringify({ ...bridgeConf(h, net, version), prevResult: pod.result })).exitCode).toBe(0)
  pod.ns.remove()
}

const firewall = (h: TestHost, command: string, net: Net, pod: Pod, extra: Json = {}, version = "1.0.0") =>
  execIn(h, FIREWALL, podEnv(command, pod.id, pod.ns.path), JSON.stringify(firewallConf(net, { ...extra, prevResult: pod.result }, version)))

const ping = (from: Pod, to: Pod): boolean =>
  Bun.spawnSync(["ip", "netns", "exec", from.ns.name, "ping", "-c", "1", "-W", "1", to.address], { stdout: "pipe", stderr: "pipe" }).exitCode === 0

describe("firewall on the real kernel", () => {
  test("open: the pod's rules are in tscni's table; CHECK finds them; DEL gives the host its ruleset back", () => {
    const h = host()
    const pod = bridgePod(h, NET_A, "it-fo")
    const before = ruleset(h)
    const add = firewall(h, "ADD", NET_A, pod)
    expect([add.exitCode, add.stderr]).toEqual([0, ""])
    expect(add.json).toEqual(pod.result)

    // the pod's address is an element of the network's set, owned by the pod; the rules look it up
    const elements = firewallElements(h)
    expect(elements.map((e) => [e.set, e.address])).toEqual([["pods4", pod.address]])
    expect(elements[0]!.comment).toMatch(/^fw:[0-9a-f]{8}:[0-9a-f]{12}$/)
    expect(chainsOf(h)).toEqual([expect.objectContaining({ name: "forward", type: "filter", hook: "forward", prio: 0, policy: "accept" })])
    expect(rulesOf(h).map((r) => r.chain)).toEqual(Array.from({ length: 6 }, () => "forward"))
    expect(rulesOf(h).every((r) => r.text.includes("@pods"))).toBe(true)

    // a repeated ADD (podman network reload) adopts what is there, as the reference's AppendUnique does
    expect(firewall(h, "ADD", NET_A, pod).exitCode).toBe(0)
    expect(firewallElements(h)).toEqual(elements)

    const check = () => firewall(h, "CHECK", NET_A, pod)
    expect([check().exitCode, check().stdout]).toEqual([0, ""])
    const table = elements[0]!.table
    nftIn(h.name, `delete element inet ${table} pods4 { ${pod.address} }`)
    const gone = check()
    expect([gone.exitCode, String(gone.json?.msg)]).toEqual([1, expect.stringContaining(`pods4 { ${pod.address} }`)])
    nftIn(h.name, `add element inet ${table} pods4 { ${pod.address} comment "${elements[0]!.comment}" }`)
    expect(check().exitCode).toBe(0)
    nftIn(h.name, `delete rule inet ${table} forward handle ${rulesOf(h)[1]!.handle}`)
    const broken = check()
    expect([broken.exitCode, String(broken.json?.msg)]).toEqual([1, expect.stringContaining("holds 5 rule(s), expected 6")])

    const del = firewall(h, "DEL", NET_A, pod)
    expect([del.exitCode, del.stdout]).toEqual([0, ""])
    expect(firewallElements(h)).toEqual([])
    expect(withoutEmptyTables(ruleset(h))).toBe(before)
    expect(ruleset(h)).toContain("table inet admin")
    removePod(h, NET_A, pod)
  })

  test("same-bridge: pods of another bridge cannot connect, pods of the same bridge can; DEL lifts it", () => {
    const h = host()
    const a1 = bridgePod(h, NET_A, "it-sb-a1")
    const a2 = bridgePod(h, NET_A, "it-sb-a2")
    const b1 = bridgePod(h, NET_B, "it-sb-b1")
    expect([ping(b1, a1), ping(a2, a1)]).toEqual([true, true])
    const before = ruleset(h)

    const add = firewall(h, "ADD", NET_A, a1, { ingressPolicy: "same-bridge" })
    expect([add.exitCode, add.stderr]).toEqual([0, ""])
    expect(firewallElements(h).map((e) => e.address)).toEqual([a1.address])
    const rules = rulesOf(h)
    expect(rules.map((r) => r.chain)).toEqual(["forward", "forward", "forward", "forward", "forward", "forward", "isolation", "isolation"])
    expect(rules[6]!.text).toContain("cni-fwa")
    expect(chainsOf(h).map((c) => [c.name, c.prio])).toEqual([["forward", 0], ["isolation", -1]])

    expect(ping(b1, a1)).toBe(false) // another bridge: dropped
    expect(ping(a2, a1)).toBe(true) // the same bridge
    expect(ping(a1, b1)).toBe(true) // the pod's own connections, and their replies
    expect(firewall(h, "CHECK", NET_A, a1, { ingressPolicy: "same-bridge" }).exitCode).toBe(0)

    expect(firewall(h, "DEL", NET_A, a1, { ingressPolicy: "same-bridge" }).exitCode).toBe(0)
    expect(withoutEmptyTables(ruleset(h))).toBe(before)
    expect(ping(b1, a1)).toBe(true)
    for (const [net, pod] of [[NET_A, a1], [NET_A, a2], [NET_B, b1]] as const) removePod(h, net, pod)
  })

  test("isolated: nobody connects to the pod (not even its bridge neighbours when br_netfilter passes them); it still connects out", () => {
    const h = host()
    const a1 = bridgePod(h, NET_A, "it-is-a1")
    const a2 = bridgePod(h, NET_A, "it-is-a2")
    const b1 = bridgePod(h, NET_B, "it-is-b1")
    const before = ruleset(h)
    expect(firewall(h, "ADD", NET_A, a1, { ingressPolicy: "isolated" }).exitCode).toBe(0)
    expect(rulesOf(h).map((r) => r.chain)).toEqual(["forward", "forward", "forward", "forward", "isolation", "isolation"])
    expect(ping(b1, a1)).toBe(false)
    const bridgedToForward = Bun.spawnSync(["ip", "netns", "exec", h.name, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"])
      .stdout.toString().trim() === "1"
    expect(ping(a2, a1)).toBe(!bridgedToForward)
    expect(ping(a1, b1)).toBe(true)
    expect(firewall(h, "DEL", NET_A, a1, { ingressPolicy: "isolated" }).exitCode).toBe(0)
    expect(withoutEmptyTables(ruleset(h))).toBe(before)
    for (const [net, pod] of [[NET_A, a1], [NET_A, a2], [NET_B, b1]] as const) removePod(h, net, pod)
  })

  test("DEL without prevResult, with the namespace gone, twice and without ADD removes exactly the pod's rules", () => {
    const h = host()
    const p1 = bridgePod(h, NET_A, "it-fd1")
    const p2 = bridgePod(h, NET_A, "it-fd2")
    const before = ruleset(h)
    expect([firewall(h, "ADD", NET_A, p1).exitCode, firewall(h, "ADD", NET_A, p2).exitCode]).toEqual([0, 0])
    p1.ns.remove()
    for (let i = 0; i < 2; i++) {
      const del = execIn(h, FIREWALL, podEnv("DEL", p1.id, ""), JSON.stringify(firewallConf(NET_A)))
      expect([del.exitCode, del.stdout]).toEqual([0, ""])
    }
    expect(firewallElements(h).map((e) => e.address)).toEqual([p2.address])
    expect(execIn(h, FIREWALL, podEnv("DEL", "it-never", ""), JSON.stringify(firewallConf(NET_A))).exitCode).toBe(0)
    expect(firewall(h, "DEL", NET_A, p2).exitCode).toBe(0)
    expect(withoutEmptyTables(ruleset(h))).toBe(before)
    execIn(h, BRIDGE, podEnv("DEL", p1.id, ""), JSON.stringify({ ...bridgeConf(h, NET_A), prevResult: p1.result }))
    removePod(h, NET_A, p2)
  })

  test("GC removes the rules of attachments no longer valid, and only this network's", () => {
    const h = host()
    const pods = [bridgePod(h, NET_A, "it-gc1"), bridgePod(h, NET_A, "it-gc2")]
    const other = bridgePod(h, NET_B, "it-gc3")
    for (const pod of pods) expect(firewall(h, "ADD", NET_A, pod).exitCode).toBe(0)
    expect(firewall(h, "ADD", NET_B, other).exitCode).toBe(0)
    const gc = execIn(h, FIREWALL, { CNI_COMMAND: "GC", CNI_PATH: BIN_DIR }, JSON.stringify({
      ...firewallConf(NET_A, {}, "1.1.0"),
      "cni.dev/valid-attachments": [{ containerID: "it-gc2", ifname: "eth0" }]
    }))
    expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
    expect(firewallElements(h).map((e) => e.address).sort()).toEqual([pods[1]!.address, other.address].sort())
    // a network whose pods are all gone: its GC removes its table too
    const all = execIn(h, FIREWALL, { CNI_COMMAND: "GC", CNI_PATH: BIN_DIR }, JSON.stringify({ ...firewallConf(NET_B, {}, "1.1.0"), "cni.dev/valid-attachments": [] }))
    expect(all.exitCode).toBe(0)
    expect(new Set(firewallTables(h).map((item) => (item.set ?? item.chain ?? item.rule).table)).size).toBe(1)
    const status = execIn(h, FIREWALL, { CNI_COMMAND: "STATUS" }, JSON.stringify(firewallConf(NET_A, {}, "1.1.0")))
    expect([status.exitCode, status.stdout]).toEqual([0, ""])
  })

  for (const version of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    test(`cniVersion ${version}: ADD returns prevResult in that version; DEL cleans`, () => {
      const h = host()
      const pod = bridgePod(h, NET_A, "it-fv", version)
      const before = ruleset(h)
      const add = firewall(h, "ADD", NET_A, pod, {}, version)
      expect(add.exitCode).toBe(0)
      expect(add.json).toEqual(pod.result)
      expect(firewallElements(h).map((e) => e.address)).toEqual([pod.address])
      expect(firewall(h, "DEL", NET_A, pod, {}, version).exitCode).toBe(0)
      expect(withoutEmptyTables(ruleset(h))).toBe(before)
      removePod(h, NET_A, pod, version)
    })
  }

  test("ADD without prevResult is code 7; backend iptables is code 2; nothing changes", () => {
    const h = host()
    const before = ruleset(h)
    const none = execIn(h, FIREWALL, podEnv("ADD", "it-fe", "/var/run/netns/none"), JSON.stringify(firewallConf(NET_A)))
    expect([none.exitCode, none.json?.code]).toEqual([1, 7])
    const iptables = execIn(h, FIREWALL, podEnv("ADD", "it-fe", "/var/run/netns/none"), JSON.stringify(firewallConf(NET_A, { backend: "iptables" })))
    expect([iptables.exitCode, iptables.json?.code]).toEqual([1, 2])
    expect(ruleset(h)).toBe(before)
  })
})

describe("a podman-style chain: bridge → firewall → tuning (cniVersion 0.4.0)", () => {
  test("ADD in order, DEL in reverse: host and pod are back as they were", () => {
    const h = host()
    const ns = netns()
    const hostBefore = observe(h.name)
    const podBefore = observe(ns.name)
    const version = "0.4.0"
    const confs: Array<[string, Json]> = [
      [BRIDGE, bridgeConf(h, NET_A, version)],
      [FIREWALL, firewallConf(NET_A, {}, version)],
      [TUNING, { cniVersion: version, name: NET_A.name, type: "tuning", dataDir: `${h.dir}/tuning`, sysctl: { "net.ipv4.conf.IFNAME.arp_notify": "1" }, mtu: 1400 }]
    ]
    let prev: Json | undefined
    for (const [plugin, conf] of confs) {
      const add = execIn(h, plugin, podEnv("ADD", "it-chain", ns.path), JSON.stringify({ ...conf, ...(prev ? { prevResult: prev } : {}) }))
      expect([plugin, add.exitCode, add.stderr]).toEqual([plugin, 0, ""])
      prev = add.json
    }
    expect(prev!.cniVersion).toBe(version)
    expect(firewallElements(h)).toHaveLength(1)
    for (const [plugin, conf] of confs) {
      const check = execIn(h, plugin, podEnv("CHECK", "it-chain", ns.path), JSON.stringify({ ...conf, prevResult: prev }))
      expect([plugin, check.exitCode, check.stdout]).toEqual([plugin, 0, ""])
    }
    for (const [plugin, conf] of [...confs].reverse()) {
      const del = execIn(h, plugin, podEnv("DEL", "it-chain", ns.path), JSON.stringify({ ...conf, prevResult: prev }))
      expect([plugin, del.exitCode, del.stdout]).toEqual([plugin, 0, ""])
    }
    expect(observeAfterDel(h.name)).toBe(hostBefore)
    expect(observe(ns.name)).toBe(podBefore)
    ns.remove()
  })
})
