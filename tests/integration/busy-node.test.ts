/**
 * A busy node: thousands of other software's rules beside tscni's, as kube-proxy (nftables
 * mode: sets, maps and a chain per service; iptables mode: KUBE-SVC chains in iptables-nft's
 * nat table) and firewalld put them there. Every plugin's ADD, CHECK, GC and DEL leaves them
 * byte for byte as they were (nft -j and iptables-save, read outside tscni's own tables and
 * chains), and 40 pods added and deleted at once leave no element, chain or link behind.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { mkdirSync, writeFileSync } from "node:fs"
import { BIN_DIR, binary, freshNetns, type PluginRun } from "./harness.ts"
import { freshHost, type TestHost } from "./hostns.ts"
import { fetchIn, serveIn } from "./traffic.ts"

type Json = Record<string, any>

const CNI = binary("cni")
const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

const runOn = (h: TestHost, argv: Array<string>, stdin?: string): PluginRun => {
  const out = Bun.spawnSync(["ip", "netns", "exec", h.name, ...argv], { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" })
  const stdout = out.stdout.toString()
  return { exitCode: out.exitCode ?? -1, stdout, stderr: out.stderr.toString(), json: stdout.trim().startsWith("{") ? JSON.parse(stdout) : undefined }
}
const must = (run: PluginRun, what: string): PluginRun => {
  if (run.exitCode !== 0) throw new Error(`${what}: ${run.stderr}`)
  return run
}

const SERVICES = 800

/** kube-proxy in nftables mode: a table with a set, a verdict map and a chain per service. */
const kubeProxyNft = (): string => {
  const lines = [
    "add table ip kube-proxy",
    "add set ip kube-proxy cluster-ips { type ipv4_addr ; }",
    "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }",
    "add chain ip kube-proxy services",
    "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }",
    "add chain ip kube-proxy filter-forward { type filter hook forward priority -101 ; }",
    "add rule ip kube-proxy nat-prerouting jump services",
    "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
    "add rule ip kube-proxy filter-forward ct state invalid drop"
  ]
  for (let i = 0; i < SERVICES; i++) {
    const ip = `172.30.${i >> 8}.${i & 255}`
    lines.push(`add chain ip kube-proxy service-${i}`)
    lines.push(`add rule ip kube-proxy service-${i} ip saddr != 10.200.0.0/16 meta mark set meta mark or 0x4000`)
    lines.push(`add rule ip kube-proxy service-${i} meta l4proto tcp dnat to 10.200.${i >> 8}.${i & 255}:8080`)
    lines.push(`add element ip kube-proxy cluster-ips { ${ip} }`)
    lines.push(`add element ip kube-proxy service-ips { ${ip} . tcp . 80 : goto service-${i} }`)
  }
  return lines.join("\n")
}

/** kube-proxy in iptables mode (iptables-nft): a KUBE-SVC chain per service in nat. */
const kubeProxyIptables = (): string => {
  const lines = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
  for (let i = 0; i < SERVICES; i++) lines.push(`:KUBE-SVC-${String(i).padStart(6, "0")} - [0:0]`)
  lines.push("-A PREROUTING -m comment --comment kubernetes -j KUBE-SERVICES", "-A OUTPUT -m comment --comment kubernetes -j KUBE-SERVICES")
  lines.push("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000")
  for (let i = 0; i < SERVICES; i++) {
    const chain = `KUBE-SVC-${String(i).padStart(6, "0")}`
    lines.push(`-A KUBE-SERVICES -d 172.31.${i >> 8}.${i & 255}/32 -p tcp -m tcp --dport 80 -j ${chain}`)
    lines.push(`-A ${chain} ! -s 10.200.0.0/16 -j KUBE-MARK-MASQ`)
    lines.push(`-A ${chain} -p tcp -m tcp -j DNAT --to-destination 10.201.${i >> 8}.${i & 255}:8080`)
  }
  lines.push("COMMIT", "")
  return lines.join("\n")
}

/** firewalld's table: zone chains with rules, hooked into input and forward (all accepting what tests send). */
const firewalld = (): string => {
  const lines = [
    "add table inet firewalld",
    "add chain inet firewalld filter_INPUT { type filter hook input priority 10 ; }",
    "add chain inet firewalld filter_FORWARD { type filter hook forward priority 10 ; }",
    "add chain inet firewalld filter_IN_public",
    "add rule inet firewalld filter_INPUT jump filter_IN_public"
  ]
  for (let i = 0; i < 400; i++) lines.push(`add rule inet firewalld filter_IN_public tcp dport ${20000 + i} accept`)
  for (let i = 0; i < 100; i++) lines.push(`add rule inet firewalld filter_FORWARD ip saddr 198.18.${i}.0/24 drop`)
  return lines.join("\n")
}

/** A node with every kind of foreign rule in place. */
const busyNode = (): TestHost => {
  const h = freshHost()
  cleanups.push(h.remove)
  must(runOn(h, ["nft", "-f", "-"], kubeProxyNft()), "kube-proxy nft")
  must(runOn(h, ["iptables-restore", "--noflush"], kubeProxyIptables()), "kube-proxy iptables")
  must(runOn(h, ["nft", "-f", "-"], firewalld()), "firewalld")
  return h
}

/**
 * Everything but tscni's, as nft -j and iptables-save print it: tables other than tscni's
 * and iptables-nft's (those are read with iptables-save, without TSCNI- chains and the
 * jumps into them). Handles included: a foreign object re-created would show.
 */
const foreign = (h: TestHost): { nft: string; iptables: string } => {
  const entries = (JSON.parse(must(runOn(h, ["nft", "-j", "list", "ruleset"]), "nft -j").stdout) as Json).nftables as Array<Json>
  const isIptablesNft = (family: string, table: string) => ["ip", "ip6"].includes(family) && ["nat", "filter", "mangle", "raw"].includes(table)
  const nft = entries.filter((entry) => {
    const body = Object.values(entry)[0] as Json
    if (entry.metainfo !== undefined) return true
    const table = String(body.table ?? body.name)
    return !table.startsWith("tscni-") && !isIptablesNft(String(body.family), table)
  })
  const iptables = ["iptables-save", "ip6tables-save"]
    .map((tool) => must(runOn(h, [tool]), tool).stdout.split("\n").filter((line) => !line.startsWith("#") && !line.includes("TSCNI-")).join("\n"))
    .join("\n---\n")
  return { nft: JSON.stringify(nft), iptables }
}

/** What tscni holds on the node: its keyed tables' elements, its pod chains, its host veths. */
const tscniState = (h: TestHost) => {
  const tables = must(runOn(h, ["nft", "list", "tables"]), "nft list tables").stdout.split("\n").filter((line) => line.includes(" tscni-"))
  const elements = tables.flatMap((line) => {
    const [, family, name] = line.split(" ")
    return runOn(h, ["nft", "-j", "list", "table", family!, name!]).stdout === "" ? [] :
      ((JSON.parse(runOn(h, ["nft", "-j", "list", "table", family!, name!]).stdout) as Json).nftables as Array<Json>)
        .filter((entry) => entry.set?.elem !== undefined || entry.map?.elem !== undefined)
        .flatMap((entry) => (entry.set ?? entry.map).elem as Array<unknown>)
  })
  const podChains = ["iptables-save", "ip6tables-save"].flatMap((tool) => runOn(h, [tool]).stdout.split("\n").filter((line) => /^:TSCNI-(M|HP|HPM)-[0-9A-F]{12} /.test(line)))
  const veths = (JSON.parse(runOn(h, ["ip", "-j", "link", "show", "type", "veth"]).stdout || "[]") as Array<Json>).map((link) => link.ifname)
  return { elements, podChains, veths }
}

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
      macspoofchk: true,
      ...(iptables ? { ipMasqBackend: "iptables" } : {}),
      ipam: { type: "host-local", ranges: [[{ subnet }]], dataDir: `${h.dir}/ipam` }
    },
    { type: "portmap", capabilities: { portMappings: true }, ...(iptables ? { backend: "iptables" } : {}) },
    { type: "bandwidth", capabilities: { bandwidth: true } },
    { type: "tuning", sysctl: { "net.core.somaxconn": "512" }, dataDir: `${h.dir}/tuning` },
    { type: "firewall" }
  ]
})

const cniOn = (h: TestHost, sub: string, args: Array<string>) =>
  ["ip", "netns", "exec", h.name, CNI, sub, "--conf-dir", `${h.dir}/net.d`, "--bin-dir", BIN_DIR, "--cache-dir", `${h.dir}/cache`, ...args]
const cni = (h: TestHost, sub: string, args: Array<string>): PluginRun => {
  const out = Bun.spawnSync(cniOn(h, sub, args), { stdout: "pipe", stderr: "pipe" })
  return { exitCode: out.exitCode ?? -1, stdout: out.stdout.toString(), stderr: out.stderr.toString(), json: undefined }
}
const caps = (hostPort: number) => [
  "--cap", `portMappings=[{"hostPort":${hostPort},"containerPort":80,"protocol":"tcp"}]`,
  "--cap", 'bandwidth={"ingressRate":20000000,"ingressBurst":200000,"egressRate":20000000,"egressBurst":200000}'
]
const writeNetworks = (h: TestHost) => {
  mkdirSync(`${h.dir}/net.d`, { recursive: true })
  writeFileSync(`${h.dir}/net.d/10-busy.conflist`, JSON.stringify(network(h, "busy", "cni-busy0", "10.129.0.0/24", false)))
  writeFileSync(`${h.dir}/net.d/20-busyipt.conflist`, JSON.stringify(network(h, "busyipt", "cni-busy1", "10.129.1.0/24", true)))
}

describe("a busy node: others' rules untouched, byte for byte", () => {
  for (const [net, label] of [["busy", "nftables"], ["busyipt", "iptables"]] as const) {
    test(`${label}: ADD, CHECK, GC and DEL of the whole chain leave kube-proxy's and firewalld's rules as they were`, async () => {
      const h = busyNode()
      writeNetworks(h)
      const before = foreign(h)
      expect(before.nft.length).toBeGreaterThan(100_000) // thousands of rules, sets and chains
      const pods = [freshNetns(), freshNetns(), freshNetns()]
      pods.forEach((p) => cleanups.push(p.remove))
      pods.forEach((p, i) => expect(cni(h, "add", [...caps(8200 + i), net, p.path]).exitCode).toBe(0))
      expect(foreign(h)).toEqual(before)
      // the pods work on this node: reached on a host port
      await serveIn(cleanups, pods[0]!.name, 80, "busy")
      const gateway = net === "busy" ? "10.129.0.1" : "10.129.1.1"
      expect(fetchIn(h.name, `http://${gateway}:8200/`)).toBe("busy")
      for (const p of pods) expect(cni(h, "check", [net, p.path]).exitCode).toBe(0)
      expect(foreign(h)).toEqual(before)
      // GC once the first pod's namespace is gone: its cached attachment is deleted, the plugins' GC runs
      pods[0]!.remove()
      expect(cni(h, "gc", [net]).exitCode).toBe(0)
      expect(foreign(h)).toEqual(before)
      for (const p of pods.slice(1)) expect(cni(h, "del", [net, p.path]).exitCode).toBe(0)
      expect(foreign(h)).toEqual(before)
      expect(tscniState(h)).toEqual({ elements: [], podChains: [], veths: [] })
    }, 120_000)
  }

  test("40 pods added at once, then deleted at once: 40 addresses, every one reachable on its host port, nothing left", async () => {
    const h = busyNode()
    writeNetworks(h)
    const before = foreign(h)
    const pods = Array.from({ length: 40 }, () => freshNetns())
    pods.forEach((p) => cleanups.push(p.remove))
    const concurrently = async (sub: string, args: (i: number) => Array<string>) =>
      Promise.all(pods.map(async (p, i) => {
        const proc = Bun.spawn(cniOn(h, sub, [...args(i), "busy", p.path]), { stdout: "pipe", stderr: "pipe" })
        return { code: await proc.exited, err: await new Response(proc.stderr).text() }
      }))
    const added = await concurrently("add", (i) => [...caps(8300 + i)])
    expect(added.filter((run) => run.code !== 0)).toEqual([])
    const addresses = pods.map((p) => {
      const link = JSON.parse(Bun.spawnSync(["ip", "-n", p.name, "-j", "addr", "show", "eth0"]).stdout.toString()) as Array<Json>
      return String(link[0]!.addr_info.find((a: Json) => a.family === "inet").local)
    })
    expect(new Set(addresses).size).toBe(40)
    // every pod's own elements are there (masquerade, MAC spoof check, host port, firewall)
    // masquerade 2, MAC spoof check 2, host port 3 (DNAT, hairpin, localhost), firewall 1
    expect(tscniState(h).elements.length).toBe(40 * 8)
    await serveIn(cleanups, pods[39]!.name, 80, "pod 40")
    expect(fetchIn(h.name, "http://10.129.0.1:8339/")).toBe("pod 40")
    const deleted = await concurrently("del", () => [])
    expect(deleted.filter((run) => run.code !== 0)).toEqual([])
    expect(tscniState(h)).toEqual({ elements: [], podChains: [], veths: [] })
    expect(foreign(h)).toEqual(before)
  }, 300_000)
})
