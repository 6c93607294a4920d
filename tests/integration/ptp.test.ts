/**
 * ptp on the real kernel: the compiled plugin (dist/bin/ptp, or PTP_BIN) in test hosts,
 * observed with ip -j and nft -j; beside Debian's reference ptp (/usr/lib/cni/ptp) for the
 * same config; a fault and a SIGKILL at every kernel call of ADD through fault-driver.ts.
 */
import { describe, expect, test } from "bun:test"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { resolve } from "node:path"
import { BIN_DIR, binary, freshNetns, ipJson, kernelFaultSweep, kernelKillSweep, podEnv } from "./harness.ts"
import { execIn, hostSysctls, nftSets, observe, observeAfterDel, restoreHostSysctls, scratchSpace, settle, spawnIn, type TestHost } from "./hostns.ts"

/** The plugin under test: PTP_BIN (a scratch build) or dist/bin/ptp. */
const PTP = process.env.PTP_BIN ?? binary("ptp")
binary("host-local")
const REFERENCE_DIR = "/usr/lib/cni"
const REFERENCE_PTP = `${REFERENCE_DIR}/ptp`
const DRIVER = resolve(import.meta.dir, "fault-driver.ts")

type Json = Record<string, any>

const { host, pod } = scratchSpace()

const V4 = [[{ subnet: "10.141.0.0/24" }]]
const DUAL = [[{ subnet: "10.141.0.0/24" }], [{ subnet: "fd14:1::/64" }]]

const conf = (h: TestHost, extra: Json = {}, ranges: Array<Array<Json>> = DUAL): Json => ({
  cniVersion: "1.0.0",
  name: "ptpnet",
  type: "ptp",
  ipMasq: true,
  mtu: 1400,
  ipam: { type: "host-local", ranges, routes: [{ dst: "0.0.0.0/0" }, ...(ranges.length > 1 ? [{ dst: "::/0" }] : [])], dataDir: h.dir },
  ...extra
})

const ping = (fromNs: string, address: string): boolean =>
  Bun.spawnSync(["ip", "netns", "exec", fromNs, "ping", "-c", "1", "-W", "2", address], { stdout: "pipe", stderr: "pipe" }).exitCode === 0

/** The host-local store of the network: each allocation and what it holds (not the lock, boot id or round-robin cursor). */
const allocations = (h: TestHost, network = "ptpnet"): Record<string, string> => {
  const dir = `${h.dir}/${network}`
  if (!existsSync(dir)) return {}
  // regular files only: host-local's temp files live in a directory of their own
  return Object.fromEntries(readdirSync(dir, { withFileTypes: true })
    .filter((f) => f.isFile() && f.name !== "lock" && f.name !== "boot_id" && !f.name.startsWith("last_reserved_ip"))
    .map((f) => [f.name, readFileSync(`${dir}/${f.name}`, "utf8")]))
}

const add = (h: TestHost, id: string, netns: string, c: Json, plugin = PTP, cniPath = BIN_DIR) => {
  const out = execIn(h, plugin, podEnv("ADD", id, netns, cniPath), JSON.stringify(c))
  expect({ id, exitCode: out.exitCode, stdout: out.exitCode === 0 ? "" : out.stdout, stderr: out.stderr }).toEqual({ id, exitCode: 0, stdout: "", stderr: "" })
  return out.json as Json
}
const del = (h: TestHost, id: string, netns: string, c: Json, prevResult?: Json, plugin = PTP, cniPath = BIN_DIR) => {
  const out = execIn(h, plugin, podEnv("DEL", id, netns, cniPath), JSON.stringify(prevResult === undefined ? c : { ...c, prevResult }))
  expect({ id, exitCode: out.exitCode, stdout: out.stdout }).toEqual({ id, exitCode: 0, stdout: "" })
}

/** The host end of a pod's veth, found with ip -j: the host link whose ifindex is eth0's peer (link_index). */
const hostEndOf = (h: TestHost, netns: string): Json => {
  const [eth0] = ipJson<Array<Json>>(netns, "link", "show", "eth0")
  return ipJson<Array<Json>>(h.name, "-d", "link", "show").find((link) => link.ifindex === eth0!.link_index)!
}

/**
 * What ip -j shows of one attachment, in both namespaces, with the names and addresses that
 * differ from run to run (the host veth's name, both ends' MACs and the link-local addresses
 * made from them) as tokens: the pod's interface and its addresses and routes (every table),
 * the host end's addresses, and the host's routes (every table) through it.
 */
const attachmentView = (h: TestHost, netns: string): Json => {
  settle(h.name, netns)
  const hostEnd = hostEndOf(h, netns)
  const veth = String(hostEnd.ifname)
  const linkLocal = new Map<string, string>()
  const tokens = (text: string) => text.replaceAll(veth, "$VETH")
  const addrView = (ns: string, dev: string, token: string) =>
    ipJson<Array<Json>>(ns, "addr", "show", "dev", dev)[0]!.addr_info.map((a: Json) => {
      const { valid_life_time: _v, preferred_life_time: _p, label: _l, ...rest } = a
      if (a.scope === "link") linkLocal.set(String(a.local), token)
      return { ...rest, local: a.scope === "link" ? token : a.local }
    })
  const podAddresses = addrView(netns, "eth0", "$POD_LL")
  const hostAddresses = addrView(h.name, veth, "$HOST_LL")
  const routes = (ns: string, filter: (route: Json) => boolean) =>
    ipJson<Array<Json>>(ns, "route", "show", "table", "all").filter(filter).map((route) => {
      const dst = linkLocal.get(String(route.dst)) ?? route.dst
      return JSON.parse(tokens(JSON.stringify({ ...route, dst })))
    })
  const [eth0] = ipJson<Array<Json>>(netns, "-d", "link", "show", "eth0")
  return {
    pod: { mtu: eth0!.mtu, flags: eth0!.flags, kind: eth0!.linkinfo?.info_kind, addresses: podAddresses, routes: routes(netns, (r) => r.dev === "eth0") },
    host: { mtu: hostEnd.mtu, flags: hostEnd.flags, kind: hostEnd.linkinfo?.info_kind, addresses: hostAddresses, routes: routes(h.name, (r) => r.dev === veth) }
  }
}

/** A result with the values that differ from run to run as tokens (read from ip -j, never from the result). */
const resultView = (h: TestHost, netns: string, result: Json): Json => {
  const hostEnd = hostEndOf(h, netns)
  const [eth0] = ipJson<Array<Json>>(netns, "link", "show", "eth0")
  const text = JSON.stringify(result).replaceAll(String(hostEnd.ifname), "$HOST_VETH").replaceAll(String(hostEnd.address), "$HOST_VETH_MAC").replaceAll(String(eth0!.address), "$POD_MAC")
  const { dns, ...rest } = JSON.parse(text) as Json
  // the reference prints "dns": {} when nobody set DNS; tscni leaves the empty key out
  return dns === undefined || Object.keys(dns).length === 0 ? rest : { ...rest, dns }
}

describe("ptp on the real kernel", () => {
  test("two routed pods reach each other, their gateway and the host (IPv4 and IPv6); CHECK passes; DEL leaves the host as it was", () => {
    const h = host()
    const p1 = pod()
    const p2 = pod()
    const before = observe(h.name)
    const c = conf(h)
    const r1 = add(h, "it-ptp1", p1.path, c)
    const r2 = add(h, "it-ptp2", p2.path, c)
    expect(r1.ips).toEqual([
      { interface: 1, address: "10.141.0.2/24", gateway: "10.141.0.1" },
      { interface: 1, address: "fd14:1::2/64", gateway: "fd14:1::1" }
    ])
    // no bridge: each pod's veth is on its own, the host routes between them
    const veths = ipJson<Array<Json>>(h.name, "-d", "link", "show", "type", "veth")
    expect(veths.map((link) => ({ master: link.master, alias: link.ifalias, mtu: link.mtu }))).toEqual([
      { master: undefined, alias: "tscni:ptpnet/it-ptp1/eth0", mtu: 1400 },
      { master: undefined, alias: "tscni:ptpnet/it-ptp2/eth0", mtu: 1400 }
    ])
    expect(ipJson<Array<Json>>(h.name, "-d", "link", "show", "type", "bridge")).toEqual([])
    for (const [from, to] of [[p1, "10.141.0.3"], [p1, "fd14:1::3"], [p2, "10.141.0.2"], [p2, "fd14:1::2"], [p1, "10.141.0.1"], [p2, "fd14:1::1"]] as const) {
      expect({ from: from.name, to, reached: ping(from.name, to) }).toEqual({ from: from.name, to, reached: true })
    }
    expect([ping(h.name, "10.141.0.2"), ping(h.name, "fd14:1::3")]).toEqual([true, true])
    // the pod's traffic to another pod goes through the host: the kernel's own route to the pod network is gone
    expect(ipJson<Array<Json>>(p1.name, "route", "show", "10.141.0.0/24")).toEqual([{ dst: "10.141.0.0/24", gateway: "10.141.0.1", dev: "eth0", prefsrc: "10.141.0.2", flags: [] }])
    // each pod's masquerade: its addresses (and with its own network) as elements of the network's table
    const masq = nftSets(h.name, /^tscni-masq-/)
    expect(masq.pods4!.map((e) => e.key).sort()).toEqual(["10.141.0.2", "10.141.0.3"])
    expect(masq.own6!.map((e) => e.key).sort()).toEqual(["fd14:1::2 . fd14:1::/64", "fd14:1::3 . fd14:1::/64"])
    expect(masq.pods4!.map((e) => e.comment)).toEqual([expect.stringMatching(/^ptp:[0-9a-f]{8}:[0-9a-f]{12}$/), expect.stringMatching(/^ptp:[0-9a-f]{8}:[0-9a-f]{12}$/)])

    for (const [id, ns, result] of [["it-ptp1", p1, r1], ["it-ptp2", p2, r2]] as const) {
      const check = execIn(h, PTP, podEnv("CHECK", id, ns.path), JSON.stringify({ ...c, prevResult: result }))
      expect([check.exitCode, check.stdout]).toEqual([0, ""])
    }
    // the first pod's DEL leaves the second one its gateway (the same address is on its own host end)
    del(h, "it-ptp1", p1.path, c, r1)
    expect([ping(p2.name, "10.141.0.1"), ping(p2.name, "fd14:1::1")]).toEqual([true, true])
    del(h, "it-ptp2", p2.path, c, r2)
    expect(observeAfterDel(h.name)).toBe(before)
    expect(allocations(h)).toEqual({})
  })

  test("the reference ptp, same config: the same result, and ip -j shows the same pod and host state", () => {
    const ours = host()
    const theirs = host()
    const p1 = pod()
    const p2 = pod()
    const ourResult = add(ours, "it-par", p1.path, conf(ours))
    const referenceResult = add(theirs, "it-par", p2.path, conf(theirs), REFERENCE_PTP, REFERENCE_DIR)
    // the same result, key for key (each pod's own namespace path as its sandbox)
    const expected = (sandbox: string) => ({
      cniVersion: "1.0.0",
      interfaces: [{ name: "$HOST_VETH", mac: "$HOST_VETH_MAC" }, { name: "eth0", mac: "$POD_MAC", sandbox }],
      ips: [{ interface: 1, address: "10.141.0.2/24", gateway: "10.141.0.1" }, { interface: 1, address: "fd14:1::2/64", gateway: "fd14:1::1" }],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }]
    })
    expect(resultView(theirs, p2.name, referenceResult)).toEqual(expected(p2.path))
    expect(resultView(ours, p1.name, ourResult)).toEqual(expected(p1.path))
    const ourView = attachmentView(ours, p1.name)
    const referenceView = attachmentView(theirs, p2.name)
    // one difference on purpose: tscni adds the IPv6 addresses without duplicate address
    // detection (nodad), usable at once; the reference waits for DAD to end in the pod (and
    // not at all on the host end, whose gateway is unusable for a second or two)
    const nodad = (view: Json) => [...view.pod.addresses, ...view.host.addresses].filter((a: Json) => a.nodad === true).map((a: Json) => a.local)
    expect({ ours: nodad(ourView), reference: nodad(referenceView) }).toEqual({ ours: ["fd14:1::2", "fd14:1::1"], reference: [] })
    const withoutNodad = (view: Json): Json => JSON.parse(JSON.stringify(view, (key, value) => (key === "nodad" ? undefined : value)))
    expect(withoutNodad(ourView)).toEqual(referenceView)
    // what that state is, spelled out: the pod keeps its prefix, reaches its gateway on the
    // link and its network through the gateway; the host end has the gateways and a route to the pod
    expect(ourView.pod.routes.filter((r: Json) => r.table === undefined).map((r: Json) => `${r.dst} ${r.gateway ?? "dev"} ${r.scope ?? ""}`)).toEqual([
      "default 10.141.0.1 ",
      "10.141.0.0/24 10.141.0.1 ",
      "10.141.0.1 dev link",
      "fd14:1::1 dev ",
      "fd14:1::/64 fd14:1::1 ",
      "fe80::/64 dev ",
      "default fd14:1::1 "
    ])
    expect(ourView.host.addresses.map((a: Json) => `${a.local}/${a.prefixlen}`)).toEqual(["10.141.0.1/32", "fd14:1::1/128", "$HOST_LL/64"])
    expect(ourView.host.routes.filter((r: Json) => r.table === undefined).map((r: Json) => `${r.dst} ${r.scope ?? ""}`)).toEqual(["10.141.0.2 host", "fd14:1::1 ", "fd14:1::2 ", "fe80::/64 "])
    del(ours, "it-par", p1.path, conf(ours), ourResult)
    del(theirs, "it-par", p2.path, conf(theirs), referenceResult, REFERENCE_PTP, REFERENCE_DIR)
  })

  test("an IPv4 /32 from IPAM (which the reference refuses: no kernel route to delete) is routed through its gateway", () => {
    const h = host()
    const p = pod()
    // (no ipMasq: the reference's DEL would look for masquerade rules its failed ADD never made, and fail)
    const c = conf(h, { ipMasq: false, ipam: { type: "static", addresses: [{ address: "10.142.0.5/32", gateway: "10.142.0.1" }] } })
    const before = { host: observe(h.name), pod: observe(p.name) }
    const refused = execIn(h, REFERENCE_PTP, podEnv("ADD", "it-32", p.path, REFERENCE_DIR), JSON.stringify(c))
    expect([refused.exitCode, String(refused.json?.msg)]).toEqual([1, expect.stringContaining("failed to delete route")])
    del(h, "it-32", p.path, c, undefined, REFERENCE_PTP, REFERENCE_DIR)
    settle(h.name, p.name)
    const result = add(h, "it-32", p.path, c)
    expect(result.ips).toEqual([{ interface: 1, address: "10.142.0.5/32", gateway: "10.142.0.1" }])
    expect(ping(p.name, "10.142.0.1")).toBe(true)
    expect(ping(h.name, "10.142.0.5")).toBe(true)
    del(h, "it-32", p.path, c, result)
    expect({ host: observeAfterDel(h.name), pod: observe(p.name) }).toEqual(before)
  })

  for (const version of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    test(`cniVersion ${version}: the result in that version; CHECK from 0.4.0 on; DEL`, () => {
      const h = host()
      const p = pod()
      const c = conf(h, { cniVersion: version }, V4)
      const result = add(h, "it-v", p.path, c)
      expect(result.cniVersion).toBe(version)
      expect(result.ips).toEqual([{ ...(version < "1.0.0" ? { version: "4" } : {}), interface: 1, address: "10.141.0.2/24", gateway: "10.141.0.1" }])
      if (version >= "0.4.0") expect(execIn(h, PTP, podEnv("CHECK", "it-v", p.path), JSON.stringify({ ...c, prevResult: result })).exitCode).toBe(0)
      del(h, "it-v", p.path, c, version >= "0.4.0" ? result : undefined)
      expect(allocations(h)).toEqual({})
    })
  }

  test("CHECK fails when the kernel's route to the pod network is back on the link, or the gateway is gone from the host end", () => {
    const h = host()
    const p = pod()
    const c = conf(h, {}, V4)
    const result = add(h, "it-chk", p.path, c)
    const check = () => execIn(h, PTP, podEnv("CHECK", "it-chk", p.path), JSON.stringify({ ...c, prevResult: result }))
    expect(check().exitCode).toBe(0)
    Bun.spawnSync(["ip", "-n", p.name, "route", "append", "10.141.0.0/24", "dev", "eth0", "proto", "kernel", "scope", "link", "src", "10.141.0.2"])
    const onLink = check()
    expect([onLink.exitCode, String(onLink.json?.msg)]).toEqual([1, expect.stringContaining("10.141.0.0/24 is routed straight onto eth0")])
    Bun.spawnSync(["ip", "-n", p.name, "route", "del", "10.141.0.0/24", "dev", "eth0", "proto", "kernel"])
    expect(check().exitCode).toBe(0)
    const veth = String(hostEndOf(h, p.name).ifname)
    Bun.spawnSync(["ip", "-n", h.name, "addr", "del", "10.141.0.1/32", "dev", veth])
    const noGateway = check()
    expect([noGateway.exitCode, String(noGateway.json?.msg)]).toEqual([1, expect.stringContaining("10.141.0.1/32 is not on")])
    del(h, "it-chk", p.path, c, result)
  })

  test("DEL with the namespace gone, without prevResult, twice, and without ADD: the host as it was, the IP free", () => {
    const h = host()
    const p = freshNetns()
    const before = observe(h.name)
    const c = conf(h)
    const result = add(h, "it-gone", p.path, c)
    p.remove()
    // first without prevResult (the runtime lost it): by name, owner and container ID alone
    del(h, "it-gone", p.path, c)
    expect({ host: observeAfterDel(h.name), allocations: allocations(h) }).toEqual({ host: before, allocations: {} })
    del(h, "it-gone", p.path, c, result)
    del(h, "it-gone", "", c, result)
    del(h, "it-never", "", c)
    expect({ host: observeAfterDel(h.name), allocations: allocations(h) }).toEqual({ host: before, allocations: {} })
  })

  test("ipMasq: the pod reaches a network with no route back only masqueraded; without it, not at all", () => {
    const h = host()
    const p1 = pod()
    const p2 = pod()
    // an outside network that has no route back to the pods
    const outside = pod()
    for (const argv of [
      ["ip", "-n", h.name, "link", "add", "it-out0", "type", "veth", "peer", "name", "eth0", "netns", outside.name],
      ["ip", "-n", h.name, "addr", "add", "192.0.2.1/24", "dev", "it-out0"],
      ["ip", "-n", h.name, "link", "set", "it-out0", "up"],
      ["ip", "-n", outside.name, "addr", "add", "192.0.2.2/24", "dev", "eth0"],
      ["ip", "-n", outside.name, "link", "set", "eth0", "up"]
    ]) expect(Bun.spawnSync(argv).exitCode).toBe(0)
    const masqueraded = conf(h, {}, V4)
    const plain = conf(h, { ipMasq: false }, V4)
    const r1 = add(h, "it-masq", p1.path, masqueraded)
    const r2 = add(h, "it-plain", p2.path, plain)
    expect([ping(p1.name, "192.0.2.2"), ping(p2.name, "192.0.2.2")]).toEqual([true, false])
    // pod to pod is not masqueraded: the other pod sees the pod's own address (it answers it directly)
    expect(ping(p1.name, "10.141.0.3")).toBe(true)
    del(h, "it-masq", p1.path, masqueraded, r1)
    expect(ping(p1.name, "192.0.2.2")).toBe(false)
    del(h, "it-plain", p2.path, plain, r2)
  })

  test("GC removes the veth and masquerade of attachments no longer valid, and their IPs; the valid pod, and another network's, keep working", () => {
    const h = host()
    const p1 = pod()
    const p2 = pod()
    const p3 = pod()
    const c = conf(h, { cniVersion: "1.1.0" })
    // another ptp network on the same host: its GC is not this one's
    const other = conf(h, { cniVersion: "1.1.0", name: "ptpother" }, [[{ subnet: "10.143.0.0/24" }]])
    add(h, "it-gc1", p1.path, c)
    const r2 = add(h, "it-gc2", p2.path, c)
    const r3 = add(h, "it-gc3", p3.path, other)
    const gc = execIn(h, PTP, { CNI_COMMAND: "GC", CNI_PATH: BIN_DIR }, JSON.stringify({ ...c, "cni.dev/valid-attachments": [{ containerID: "it-gc2", ifname: "eth0" }] }))
    expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
    expect(ipJson<Array<Json>>(h.name, "-d", "link", "show", "type", "veth").map((link) => link.ifalias).sort()).toEqual(["tscni:ptpnet/it-gc2/eth0", "tscni:ptpother/it-gc3/eth0"])
    // each network has a masquerade table of its own: the pods left in each
    const tables = (JSON.parse(execIn(h, ["nft", "-j", "list", "tables"], {}, "").stdout) as { nftables: Array<Json> }).nftables
      .flatMap((entry) => (entry.table !== undefined && String(entry.table.name).startsWith("tscni-masq-") ? [String(entry.table.name)] : []))
    expect(tables.map((table) => {
      const sets = nftSets(h.name, new RegExp(`^${table}$`))
      return [...(sets.pods4 ?? []), ...(sets.pods6 ?? [])].map((e) => e.key)
    }).sort()).toEqual([["10.141.0.3", "fd14:1::3"], ["10.143.0.2"]])
    // the addresses' files (the owner index entry beside them holds the same owner)
    expect(Object.entries(allocations(h)).filter(([name]) => !name.startsWith(".")).map(([, owner]) => owner.split(/\r?\n/)[0])).toEqual(["it-gc2", "it-gc2"])
    expect(Object.keys(allocations(h, "ptpother")).filter((name) => !name.startsWith("."))).toEqual(["10.143.0.2"])
    expect([ping(p2.name, "10.141.0.1"), ping(p2.name, "fd14:1::1"), ping(p3.name, "10.143.0.1")]).toEqual([true, true, true])
    const status = execIn(h, PTP, { CNI_COMMAND: "STATUS", CNI_PATH: BIN_DIR }, JSON.stringify(c))
    expect([status.exitCode, status.stdout]).toEqual([0, ""])
    del(h, "it-gc2", p2.path, c, r2)
    del(h, "it-gc3", p3.path, other, r3)
  })
})

describe("ptp from the multicall binary", () => {
  test("host-local, being the same executable, runs in-process with the same store on disk", () => {
    const h = host()
    const p = pod()
    const dir = `${h.dir}/bin`
    Bun.spawnSync(["mkdir", "-p", dir])
    // TSCNI_BIN: a scratch build of the multicall binary, or dist/bin/tscni
    Bun.spawnSync(["cp", process.env.TSCNI_BIN ?? binary("tscni"), `${dir}/tscni`])
    for (const name of ["ptp", "host-local"]) Bun.spawnSync(["ln", "-s", "tscni", `${dir}/${name}`])
    const before = observe(h.name)
    const c = conf(h)
    const result = add(h, "it-mc", p.path, c, `${dir}/ptp`, dir)
    expect(result.ips.map((ip: Json) => ip.address)).toEqual(["10.141.0.2/24", "fd14:1::2/64"])
    expect(readFileSync(`${h.dir}/ptpnet/10.141.0.2`, "utf8").split(/\r?\n/)).toEqual(["it-mc", "eth0"])
    expect([ping(p.name, "10.141.0.1"), ping(p.name, "fd14:1::1")]).toEqual([true, true])
    del(h, "it-mc", p.path, c, result, `${dir}/ptp`, dir)
    expect({ host: observeAfterDel(h.name), allocations: allocations(h) }).toEqual({ host: before, allocations: {} })
  })
})

describe("ptp mixed with the reference plugins (Debian containernetworking-plugins)", () => {
  test("our ptp with the reference host-local, and the reference ptp with our host-local", () => {
    const h = host()
    const p1 = pod()
    const p2 = pod()
    const before = observe(h.name)
    const c = conf(h)
    const ours = add(h, "it-mix1", p1.path, c, PTP, `${REFERENCE_DIR}:${BIN_DIR}`)
    const theirs = add(h, "it-mix2", p2.path, { ...c, ipMasq: false }, REFERENCE_PTP, BIN_DIR)
    expect([ours.ips[0].address, theirs.ips[0].address]).toEqual(["10.141.0.2/24", "10.141.0.3/24"])
    // both pods on one host, one plugin each: they reach each other through it (once the
    // reference's addresses are through duplicate address detection)
    settle(h.name, p1.name, p2.name)
    expect([ping(p1.name, "10.141.0.3"), ping(p2.name, "10.141.0.2"), ping(p1.name, "fd14:1::3")]).toEqual([true, true, true])
    const check = execIn(h, PTP, podEnv("CHECK", "it-mix1", p1.path, `${REFERENCE_DIR}:${BIN_DIR}`), JSON.stringify({ ...c, prevResult: ours }))
    expect([check.exitCode, check.stdout]).toEqual([0, ""])
    del(h, "it-mix1", p1.path, c, ours, PTP, `${REFERENCE_DIR}:${BIN_DIR}`)
    del(h, "it-mix2", p2.path, { ...c, ipMasq: false }, theirs, REFERENCE_PTP, BIN_DIR)
    expect(observeAfterDel(h.name)).toBe(before)
    expect(allocations(h)).toEqual({})
  })
})

/** Host switches ptp's ADD turns on last and never puts back: forwarding. */
const FORWARDING = /\/(ipv4\/ip_forward|ipv6\/conf\/all\/forwarding):/
const withoutForwarding = (sysctls: string): string => sysctls.split("\n").filter((line) => !FORWARDING.test(line)).join("\n")

/**
 * kernelFaultSweep of one ptp ADD: after each failed run the host (observe(): links,
 * addresses, routes, tc, nft), its sysctls, the pod's namespace, `others` (the namespaces of
 * pods already there) and the IPAM store must be exactly as before; forwarding only after a
 * fault among its own writes (set last, never put back). The clean run is deleted and
 * forwarding put back.
 */
const ptpFaultSweep = (h: TestHost, p: { name: string; path: string }, id: string, c: Json, others: Array<string> = []): number => {
  const state = () => ({ host: observe(h.name), sysctls: hostSysctls(h.name), pod: observe(p.name), others: others.map((ns) => observe(ns)), allocations: allocations(h) })
  const before = state()
  let fault = ""
  return kernelFaultSweep(
    (k) => {
      const run = execIn(h, ["bun", DRIVER, "ptp", String(k)], podEnv("ADD", id, p.path), JSON.stringify(c))
      fault = String(run.json?.msg ?? "")
      return run
    },
    (run) => {
      del(h, id, p.path, c, run.json)
      restoreHostSysctls(h.name, before.sysctls)
    },
    (k) => {
      const after = state()
      expect({ k, ...after, sysctls: withoutForwarding(after.sysctls) }).toEqual({ k, ...before, sysctls: withoutForwarding(before.sysctls) })
      if (after.sysctls !== before.sysctls) expect({ k, fault }).toEqual({ k, fault: expect.stringMatching(/^writeSysctl: /) })
      restoreHostSysctls(h.name, before.sysctls)
    }
  )
}

describe("ptp: a fault or a SIGKILL at every kernel call of ADD", () => {
  test.each([
    ["IPv4", "it-fault4", V4],
    ["dual stack", "it-fault46", DUAL]
  ])("%s: each failed ADD leaves the host, its forwarding, the pod and IPAM unchanged", (_label, id, ranges) => {
    const h = host()
    const p = pod()
    expect(ptpFaultSweep(h, p, id, conf(h, {}, ranges))).toBeGreaterThan(10)
  }, 300_000)

  test("a second pod of the network (dual stack): each failed ADD leaves the first pod's veth, gateways, routes, masquerade and IP intact", () => {
    const h = host()
    const first = pod()
    const p = pod()
    const empty = observe(h.name)
    const c = conf(h)
    const r1 = add(h, "it-first", first.path, c)
    settle(h.name, first.name)
    expect(ptpFaultSweep(h, p, "it-second", c, [first.name])).toBeGreaterThan(10)
    expect([ping(first.name, "10.141.0.1"), ping(first.name, "fd14:1::1")]).toEqual([true, true])
    expect(execIn(h, PTP, podEnv("CHECK", "it-first", first.path), JSON.stringify({ ...c, prevResult: r1 })).exitCode).toBe(0)
    del(h, "it-first", first.path, c, r1)
    expect(observeAfterDel(h.name)).toBe(empty)
  }, 300_000)

  test("SIGKILL at every Backend call of ADD, then DEL without prevResult: no veth, address, route, element or IPAM allocation is left", async () => {
    const h = host()
    const p = pod()
    const c = conf(h)
    const state = () => ({ host: observeAfterDel(h.name), pod: observe(p.name), allocations: allocations(h) })
    const before = state()
    const { ops, left } = await kernelKillSweep(
      (k) => spawnIn(h, ["bun", DRIVER, "ptp", String(k), "pause"], podEnv("ADD", "it-kill", p.path), JSON.stringify(c)),
      (k) => {
        // no prevResult: the runtime never got one from a killed ADD
        const out = execIn(h, PTP, podEnv("DEL", "it-kill", p.path), JSON.stringify(c))
        expect({ k, code: out.exitCode }).toEqual({ k, code: 0 })
      },
      (k) => expect({ k, ...state() }).toEqual({ k, ...before }),
      () => JSON.stringify(state()) !== JSON.stringify(before)
    )
    // the kills fell on the veth, the addresses, the dropped kernel routes, the routes and the
    // masquerade; IPAM runs before the first kernel call, so every kill left DEL an IP to free
    expect(ops).toEqual(expect.arrayContaining(["createVeth", "addAddress", "deleteRoute", "addRoute", "writeSysctl"]))
    expect(left).toEqual(ops.map((_, i) => i + 1))
  }, 300_000)
})
