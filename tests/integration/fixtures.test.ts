/**
 * The fixtures of `fixtures/` (see fixtures/README.md), run as a runtime runs them.
 *
 * Each network of fixtures/networks/ is the configuration a real runtime or installer
 * writes (containerd, podman, the Kubernetes docs, flannel, kind), run through the
 * compiled `cni` CLI inside a fresh namespace standing in for the node, with the
 * capability args, CNI_ARGS and interface name that runtime passes (runtime.json), after
 * the node preparation the configuration presumes (runtime.json `node`). ADD's result
 * must equal expected.json once its tokens (`$POD_MAC`, `$HOST_VETH`, …) are replaced by
 * what the kernel shows (`ip -j`), never by what tscni printed; CHECK must pass (0.4.0
 * and later; a 0.3.x list has no CHECK, and the CLI must refuse it without running a
 * plugin, as libcni does); the pod reaches its gateways, a hostPort answers, bandwidth's
 * qdiscs are what tc.json says; DEL leaves the node and the pod as they were and the
 * allocation gone. No fixture is 1.1.0, so none has GC.
 *
 * The only rewriting of a fixture at test time: paths where a plugin would write outside
 * the test's own directory (host-local's `dataDir`, tuning's `dataDir`), and the CLI's
 * conf, cache and bin dirs, which are flags.
 *
 * fixtures/results/bridge-host-local/<version>.json are the exact results of one plain
 * bridge + host-local ADD in every spec version the bridge says it supports, proven
 * against the compiled bridge.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { BIN_DIR, binary, freshNetns, ipJson, podEnv } from "./harness.ts"
import { execIn, freshHost, iptablesState, observe, observeAfterDel, settle, type TestHost } from "./hostns.ts"
import { fetchIn, serveIn } from "./traffic.ts"

type Json = Record<string, any>

const FIXTURES = resolve(import.meta.dir, "..", "..", "fixtures")
const CNI = binary("cni")
const BRIDGE = binary("bridge")
for (const plugin of ["host-local", "portmap", "bandwidth", "firewall", "tuning", "ptp"]) binary(plugin)

const PATH = process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"

const cleanups: Array<() => void> = []
afterAll(() => cleanups.splice(0).reverse().forEach((cleanup) => cleanup()))
const host = (): TestHost => {
  const h = freshHost()
  cleanups.push(h.remove)
  return h
}

const readJson = <T = Json>(...path: ReadonlyArray<string>): T => JSON.parse(readFileSync(join(FIXTURES, ...path), "utf8")) as T

/** What runtime.json says the runtime passes, and what the node has before the runtime runs. */
interface RuntimeFixture {
  readonly runtime: string
  readonly ifname: string
  /** CNI_ARGS as libcni's RuntimeConf.Args pairs */
  readonly args: ReadonlyArray<readonly [string, string]>
  /** libcni's CapabilityArgs: each becomes runtimeConfig.<name> for the plugins declaring it */
  readonly capabilityArgs: Readonly<Record<string, unknown>>
  /** node preparation: argv lists run inside the test's node namespace, in order */
  readonly node: ReadonlyArray<ReadonlyArray<string>>
}

/** Replaces every string `"$NAME"` by `tokens.NAME`; a token without a value is an error, not a pass. */
const substitute = (value: unknown, tokens: Readonly<Record<string, string>>): unknown => {
  if (typeof value === "string" && /^\$[A-Z_]+$/.test(value)) {
    const known = tokens[value.slice(1)]
    if (known === undefined) throw new Error(`token ${value}: nothing in the kernel to read it from (known: ${Object.keys(tokens).join(", ")})`)
    return known
  }
  if (Array.isArray(value)) return value.map((item) => substitute(item, tokens))
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substitute(item, tokens)]))
  }
  return value
}

/**
 * The run-time values of a result, read from the kernel with `ip -j`: the pod's interface
 * and MAC, its veth peer on the node (the link whose index the pod's interface names as
 * its peer), the bridge that peer is enslaved to, and an ifb if the node has one.
 */
const kernelTokens = (node: string, pod: { readonly name: string; readonly path: string }, ifname: string): Record<string, string> => {
  const podLink = ipJson(pod.name, "-d", "link", "show", "dev", ifname)[0]!
  const nodeLinks = ipJson<Array<Json>>(node, "-d", "link", "show")
  const hostVeth = nodeLinks.find((link) => link.ifindex === podLink.link_index)
  const bridge = nodeLinks.find((link) => link.ifname === hostVeth?.master)
  const ifbs = nodeLinks.filter((link) => link.linkinfo?.info_kind === "ifb")
  const tokens: Record<string, string> = { NETNS: pod.path, POD_MAC: String(podLink.address) }
  if (hostVeth !== undefined) Object.assign(tokens, { HOST_VETH: hostVeth.ifname, HOST_VETH_MAC: hostVeth.address })
  if (bridge !== undefined) tokens.BRIDGE_MAC = bridge.address
  if (ifbs.length === 1) Object.assign(tokens, { IFB: ifbs[0]!.ifname, IFB_MAC: ifbs[0]!.address })
  return tokens
}

const containerId = (): string => randomBytes(32).toString("hex")

const run = (argv: ReadonlyArray<string>): { exitCode: number; stdout: string; stderr: string } => {
  const proc = Bun.spawnSync([...argv], { env: { PATH }, stdout: "pipe", stderr: "pipe" })
  return { exitCode: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() }
}
const inNode = (h: TestHost, argv: ReadonlyArray<string>) => run(["ip", "netns", "exec", h.name, ...argv])
const read = (netns: string, argv: ReadonlyArray<string>): string => run(["ip", "netns", "exec", netns, ...argv]).stdout

const ping = (fromNs: string, address: string): boolean =>
  run(["ip", "netns", "exec", fromNs, "ping", "-c", "1", "-W", "2", address]).exitCode === 0

const compareVersions = (a: string, b: string): number => {
  const [x, y] = [a, b].map((v) => v.split(".").map(Number))
  for (let i = 0; i < 3; i++) if (x![i] !== y![i]) return x![i]! - y![i]!
  return 0
}

/**
 * The only rewriting of a fixture: where a plugin would write outside the test's own
 * directory. host-local's allocations (`dataDir`, default /var/lib/cni/networks; kindnet's
 * /run/cni-ipam-state) and tuning's state files (`dataDir`, default /var/lib/tscni/tuning)
 * go under the test node's scratch directory.
 */
const localized = (conflist: Json, dir: string): Json => ({
  ...conflist,
  plugins: (conflist.plugins as Array<Json>).map((plugin) => {
    let out = plugin
    if (plugin.ipam?.type === "host-local") out = { ...out, ipam: { ...plugin.ipam, dataDir: join(dir, "ipam") } }
    if (plugin.type === "tuning") out = { ...out, dataDir: join(dir, "tuning") }
    return out
  })
})

/** host-local's allocations: one file per IP, named by it (not its `lock`, `boot_id` or `last_reserved_ip.*`). */
const allocations = (dir: string): Array<string> =>
  existsSync(dir) ? readdirSync(dir).filter((f) => /^[0-9.]+$|^[0-9a-f:]+$/.test(f) && /[.:]/.test(f)) : []
/** Every file of a directory (tuning's state files, the CLI's cache entries). */
const files = (dir: string): Array<string> => (existsSync(dir) ? readdirSync(dir) : [])

const IPTABLES_TABLE = /^table (ip|ip6) (nat|filter|mangle|raw|security) \{$/
/**
 * observe() of the node, or observeAfterDel() after DEL, without the tables iptables-nft
 * owns: those are compared with iptablesState(), which leaves out their counters (kube-proxy's
 * chains count the test's traffic) and tscni's shared chains left empty by the last DEL.
 */
const nodeView = (netns: string, afterDel: boolean): string => {
  const view = JSON.parse(afterDel ? observeAfterDel(netns) : observe(netns)) as Json
  const kept: Array<string> = []
  let inIptablesTable = false
  for (const line of (view.nft as string).split("\n")) {
    if (IPTABLES_TABLE.test(line)) inIptablesTable = true
    if (!inIptablesTable) kept.push(line)
    if (line === "}") inIptablesTable = false
  }
  return JSON.stringify({ ...view, nft: kept.join("\n") }, null, 1)
}

/** Qdiscs as tc.json writes them: the keys it has (not refcnt), sorted by device and kind. */
const qdiscView = (qdiscs: ReadonlyArray<Json>): Array<Json> =>
  qdiscs
    .map((q) => Object.fromEntries(["dev", "kind", "handle", "root", "parent", "options"].filter((k) => k in q).map((k) => [k, q[k]])))
    .sort((a, b) => `${a.dev} ${a.kind}`.localeCompare(`${b.dev} ${b.kind}`))
/** The node's qdiscs that shape: all that `tc -j qdisc show` lists but `noqueue`. */
const shapingQdiscs = (node: string): Array<Json> =>
  qdiscView((JSON.parse(read(node, ["tc", "-j", "qdisc", "show"])) as Array<Json>).filter((q) => q.kind !== "noqueue"))

const NETWORKS = readdirSync(join(FIXTURES, "networks")).sort()

describe("fixtures/networks: real-world configurations through the cni CLI", () => {
  test("every fixture has its conflist, runtime.json and expected.json", () => {
    expect(NETWORKS).toEqual(["containerd", "flannel", "k8s-bandwidth", "k8s-portmap", "kindnet", "podman"])
    for (const name of NETWORKS) {
      const entries = readdirSync(join(FIXTURES, "networks", name))
      expect({ name, conflists: entries.filter((f) => f.endsWith(".conflist")).length }).toEqual({ name, conflists: 1 })
      expect(entries).toEqual(expect.arrayContaining(["runtime.json", "expected.json"]))
    }
  })

  for (const name of NETWORKS) {
    test(name, async () => {
      const dir = join(FIXTURES, "networks", name)
      const conflistFile = readdirSync(dir).find((f) => f.endsWith(".conflist"))!
      const conflist = readJson(join("networks", name, conflistFile))
      const id = containerId()
      const rt = substitute(readJson(join("networks", name, "runtime.json")), { CONTAINER_ID: id }) as RuntimeFixture
      const expected = readJson(join("networks", name, "expected.json"))
      const tc = existsSync(join(dir, "tc.json")) ? readJson<Array<Json>>(join("networks", name, "tc.json")) : undefined

      const h = host()
      const local: Array<() => void> = []
      const pod = freshNetns()
      local.push(pod.remove)
      try {
        const confDir = join(h.dir, "net.d")
        mkdirSync(confDir)
        writeFileSync(join(confDir, conflistFile), JSON.stringify(localized(conflist, h.dir), null, 2))
        for (const argv of rt.node) {
          const prepared = inNode(h, argv)
          expect({ argv, exitCode: prepared.exitCode, stderr: prepared.stderr }).toEqual({ argv, exitCode: 0, stderr: "" })
        }
        const nodeBefore = nodeView(h.name, false)
        const iptablesBefore = iptablesState(h.name)
        const podBefore = observe(pod.name)

        // the runtime passes the same args on every verb (containerd and podman build them again for teardown)
        const flags = [
          "--conf-dir", confDir, "--bin-dir", BIN_DIR, "--cache-dir", join(h.dir, "cache"),
          "--container-id", id, "--ifname", rt.ifname,
          ...(rt.args.length > 0 ? ["--args", rt.args.map(([k, v]) => `${k}=${v}`).join(";")] : []),
          ...Object.entries(rt.capabilityArgs).flatMap(([cap, value]) => ["--cap", `${cap}=${JSON.stringify(value)}`])
        ]
        const cni = (verb: string, ...extra: ReadonlyArray<string>) => inNode(h, [CNI, verb, ...extra, ...flags, conflist.name, pod.path])

        // ADD: the whole result, against the kernel's values
        const add = cni("add", "--json")
        expect({ exitCode: add.exitCode, stderr: add.exitCode === 0 ? "" : add.stderr }).toEqual({ exitCode: 0, stderr: "" })
        const tokens = kernelTokens(h.name, pod, rt.ifname)
        expect(JSON.parse(add.stdout)).toEqual(substitute(expected, tokens) as Json)

        // the kernel holds what the result says: the pod's addresses, a route for each result
        // route (one without `gw` goes via its family's gateway), the main plugin's link options
        settle(h.name, pod.name)
        const ips = expected.ips as Array<Json>
        const gatewayOf = (dst: string) => ips.find((ip) => ip.address.includes(":") === dst.includes(":"))!.gateway as string
        const podAddresses = (ipJson(pod.name, "addr", "show", "dev", rt.ifname)[0]!.addr_info as Array<Json>)
          .filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`)
        expect(podAddresses.sort()).toEqual(ips.map((ip) => ip.address as string).sort())
        const podRoutes = ["-4", "-6"].flatMap((family) => ipJson(pod.name, family, "route", "show").map((r) => `${r.dst} via ${r.gateway ?? "-"}`))
        const resultRoutes = (expected.routes as Array<Json>).map((r) =>
          `${r.dst === "0.0.0.0/0" || r.dst === "::/0" ? "default" : r.dst} via ${r.gw ?? gatewayOf(r.dst)}`)
        expect(podRoutes).toEqual(expect.arrayContaining(resultRoutes))
        const main = (conflist.plugins as Array<Json>)[0]!
        const nodeLink = (ifname: string) => ipJson<Array<Json>>(h.name, "-d", "link", "show", "dev", ifname)[0]!
        if (main.mtu !== undefined) expect(ipJson(pod.name, "link", "show", "dev", rt.ifname)[0]!.mtu).toBe(main.mtu)
        if (main.hairpinMode === true) expect(nodeLink(tokens.HOST_VETH!).linkinfo.info_slave_data.hairpin).toBe(true)
        if (main.promiscMode === true) expect(nodeLink(main.bridge).flags).toContain("PROMISC")

        // the real effect: each gateway reached
        const gateways = ips.map((ip) => ip.gateway as string)
        expect(gateways.map((gw) => [gw, ping(pod.name, gw)])).toEqual(gateways.map((gw) => [gw, true]))

        // a hostPort answers from the node: on each gateway address and on 127.0.0.1
        // containerd's fixtures carry go-cni's field names (HostPort, …): read either spelling
        const field = (entry: Json, name: string) => entry[Object.keys(entry).find((key) => key.toLowerCase() === name.toLowerCase()) ?? name]
        const mappings = ((rt.capabilityArgs.portMappings ?? []) as Array<Json>).map((entry) => ({
          hostPort: field(entry, "hostPort") as number,
          containerPort: field(entry, "containerPort") as number
        }))
        for (const [i, mapping] of mappings.entries()) {
          const body = `${name} fixture, mapping ${i}`
          await serveIn(local, pod.name, mapping.containerPort, body, gateways.some((gw) => gw.includes(":")) ? "::" : "0.0.0.0")
          const urls = [...gateways.map((gw) => (gw.includes(":") ? `[${gw}]` : gw)), "127.0.0.1"].map((a) => `http://${a}:${mapping.hostPort}/`)
          expect(urls.map((url) => [url, fetchIn(h.name, url)])).toEqual(urls.map((url) => [url, body]))
        }

        // bandwidth: the node's qdiscs, as tc shows them
        if (tc !== undefined) expect(shapingQdiscs(h.name)).toEqual(qdiscView(substitute(tc, tokens) as Array<Json>))

        // CHECK: from 0.4.0 on it must pass; a 0.3.x list has no CHECK (libcni: ErrorCheckNotSupp),
        // and the CLI must say so without running any plugin
        const check = cni("check")
        if (compareVersions(conflist.cniVersion, "0.4.0") >= 0) {
          expect({ exitCode: check.exitCode, stderr: check.exitCode === 0 ? "" : check.stderr }).toEqual({ exitCode: 0, stderr: "" })
        } else {
          expect({ exitCode: check.exitCode, stdout: check.stdout, stderr: check.stderr }).toEqual({
            exitCode: 1,
            stdout: "",
            stderr: `cni: [code 1] network ${conflist.name}: configuration version ${conflist.cniVersion} does not support the CHECK command\n`
          })
        }

        // DEL: the node and the pod as before, the allocation and state files gone, the cache entry gone
        const del = cni("del")
        expect({ exitCode: del.exitCode, stderr: del.exitCode === 0 ? "" : del.stderr }).toEqual({ exitCode: 0, stderr: "" })
        for (const stop of local.splice(1)) stop()
        expect(nodeView(h.name, true)).toBe(nodeBefore)
        expect(iptablesState(h.name, { withoutEmptyChains: true })).toBe(iptablesBefore)
        expect(observe(pod.name)).toBe(podBefore)
        expect(allocations(join(h.dir, "ipam", conflist.name))).toEqual([])
        expect(files(join(h.dir, "tuning", conflist.name))).toEqual([])
        expect(files(join(h.dir, "cache"))).toEqual([])
      } finally {
        for (const stop of local.splice(0).reverse()) stop()
      }
    }, 120_000)
  }
})

describe("fixtures/results: the exact result of a bridge + host-local ADD in every spec version", () => {
  const network = readJson(join("results", "bridge-host-local", "network.json"))
  const vectors = readdirSync(join(FIXTURES, "results", "bridge-host-local"))
    .filter((f) => f !== "network.json")
    .map((f) => f.replace(/\.json$/, ""))
    .sort(compareVersions)

  test("one vector for each version the compiled bridge supports", () => {
    const version = Bun.spawnSync([BRIDGE], { env: { PATH, CNI_COMMAND: "VERSION" }, stdin: Buffer.from("{}") })
    const supported = JSON.parse(version.stdout.toString()).supportedVersions as Array<string>
    expect(vectors).toEqual([...supported].sort(compareVersions))
  })

  for (const version of vectors) {
    test(version, () => {
      const vector = readJson(join("results", "bridge-host-local", `${version}.json`))
      const h = host()
      const pod = freshNetns()
      try {
        const conf = { ...network, cniVersion: version, ipam: { ...network.ipam, dataDir: join(h.dir, "ipam") } }
        const id = containerId()
        const nodeBefore = observe(h.name)
        const add = execIn(h, BRIDGE, podEnv("ADD", id, pod.path), JSON.stringify(conf))
        expect({ exitCode: add.exitCode, stdout: add.exitCode === 0 ? "" : add.stdout }).toEqual({ exitCode: 0, stdout: "" })
        expect(add.json).toEqual(substitute(vector, kernelTokens(h.name, pod, "eth0")) as Json)
        // DEL as a runtime sends it: with the result as prevResult from 0.4.0 on
        const delConf = compareVersions(version, "0.4.0") >= 0 ? { ...conf, prevResult: add.json } : conf
        const del = execIn(h, BRIDGE, podEnv("DEL", id, pod.path), JSON.stringify(delConf))
        expect({ exitCode: del.exitCode, stdout: del.stdout }).toEqual({ exitCode: 0, stdout: "" })
        expect(observeAfterDel(h.name)).toBe(nodeBefore)
        expect(allocations(join(h.dir, "ipam", network.name))).toEqual([])
      } finally {
        pod.remove()
      }
    }, 60_000)
  }
})
