/**
 * End-to-end: podman 4.3 (Debian) with its CNI backend runs our plugins from dist/bin on a
 * network it created itself, on the REAL host namespace (that is the point of a runtime
 * e2e). Observed with busybox inside the containers, `ip -j` in their namespaces and on
 * the host, `nft -j list ruleset`, the host-local dataDir and fetch() from the host.
 *
 * Opt-in, because it changes the host (a bridge, nftables rules, forwarding sysctls) for
 * the time it runs:  bash tests/e2e/setup.sh && TSCNI_E2E=1 bun test tests/e2e
 * Everything is undone in afterAll (and by tests/e2e/cleanup.sh after a crash).
 *
 * With TSCNI_E2E_RESIDENT=1 the same suite runs with the multicall binary (links in a
 * scratch dir) and `tscni daemon` serving podman's calls; the last test proves it did.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { cleanupOwnRuns, cleanupStaleRuns } from "./cleanup.ts"
import {
  acquireLock,
  CNI_RESULTS_DIR,
  createNetwork,
  createPodman,
  IMAGE,
  inspect,
  ipamAllocations,
  links,
  nftElements,
  nftRules,
  OUR_PLUGINS,
  PODMAN_CHAIN,
  podmanArgv,
  podmanEnv,
  preflight,
  routes,
  runDetached,
  TSCNI_KEYED_TABLE,
  type NetworkSpec,
  type Podman
} from "./podman.ts"

const ENABLED = process.env.TSCNI_E2E === "1"
const RESIDENT = ENABLED && process.env.TSCNI_E2E_RESIDENT === "1"
/** for the resident run: the multicall binary under every plugin name, and the daemon's socket */
const residentDir = RESIDENT ? mkdtempSync(join(tmpdir(), "tscni-e2e-resident-")) : ""
const DAEMON_SOCKET = join(residentDir, "daemon.sock")
if (RESIDENT) {
  for (const name of ["tscni", "bridge", "host-local", "portmap", "firewall", "tuning", "loopback", "bandwidth"]) {
    symlinkSync(join(OUR_PLUGINS, "tscni"), join(residentDir, name))
  }
}
/** to check the test itself against another plugin set (e.g. /usr/lib/cni) */
const PLUGIN_DIR = RESIDENT ? residentDir : process.env.TSCNI_E2E_PLUGIN_DIR ?? OUR_PLUGINS
let daemon: ReturnType<typeof Bun.spawn> | undefined
const SERVED = "served by the tscni daemon"
const TIMEOUT = 120_000

const V4: NetworkSpec = { name: "tscni-e2e-v4", bridge: "tscni-e2e0", subnets: ["10.250.1.0/24"] }
const DS: NetworkSpec = { name: "tscni-e2e-ds", bridge: "tscni-e2e1", subnets: ["10.250.2.0/24", "fd00:250:2::/64"], ipv6: true }

let podman: Podman
let conf: string
let release: (() => void) | undefined
let logFile: string
const notes: Array<string> = []
const conflists: Record<string, Record<string, any>> = {}
/** the host before the first container: veth names, nftables rule texts and set elements */
let baseline: { veths: Set<string>; rules: Set<string>; elements: Set<string> }

/**
 * The environment podman passes to plugins: they log to a file in the run's directory; in
 * the resident run they find the daemon, and log at debug level, which says who served a call.
 */
const pluginEnv = (): Record<string, string> =>
  RESIDENT ? { TSCNI_LOG_FILE: logFile, TSCNI_DAEMON_SOCKET: DAEMON_SOCKET, TSCNI_LOG: "debug" } : { TSCNI_LOG_FILE: logFile }
/** podman with this run's config */
const pod = (...args: Array<string>) => podman.ok(conf, args, pluginEnv())
const podRun = (...args: Array<string>) => podman.run(conf, args, pluginEnv())
const start = (name: string, network: string, args: Array<string>, command: Array<string>) =>
  runDetached(podman, conf, name, ["--network", network, ...args], command, pluginEnv())

const hostVeths = () => new Set(links().filter((link) => link.kind === "veth").map((link) => link.ifname))
/**
 * Rules as text without handles and counters (those change by themselves), but not those
 * of tscni's keyed tables: their skeleton stays after a network's last pod (GC removes it,
 * and podman 4.3 does not call GC); what is the pods' in them are elements (elementTexts).
 */
const ruleTexts = () =>
  new Set(
    nftRules().filter((rule) => !TSCNI_KEYED_TABLE.test(rule.table))
      .map((rule) => rule.text.replace(/"handle":\d+,?/, "").replace(/\{"counter":\{[^}]*\}\}/g, "counter"))
  )
const elementTexts = () => new Set(nftElements().map((element) => `${element.family} ${element.table} ${element.set} ${element.text}`))

const freePort = (): number => {
  const listener = Bun.listen({ hostname: "0.0.0.0", port: 0, socket: { data() {} } })
  const port = listener.port
  listener.stop(true)
  return port
}

const fetchText = async (url: string): Promise<string> => {
  let last: unknown
  for (let attempt = 0; attempt < 25; attempt++) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) })
      return await response.text()
    } catch (error) {
      last = error
      await Bun.sleep(200)
    }
  }
  throw new Error(`${url}: ${String(last)}`)
}

interface Attachment {
  readonly name: string
  readonly id: string
  readonly sandbox: string
  readonly ipv4: string
  readonly ipv6: string
  readonly gateway: string
  readonly gateway6: string
}

const attachment = (name: string, network: string): Attachment => {
  const info = inspect(podman, conf, name)
  const net = info.NetworkSettings.Networks[network]
  return {
    name,
    id: info.Id,
    sandbox: info.NetworkSettings.SandboxKey,
    ipv4: net.IPAddress,
    ipv6: net.GlobalIPv6Address,
    gateway: net.Gateway,
    gateway6: net.IPv6Gateway
  }
}

/** The host end of a container's eth0: the link whose ifindex its eth0 names as peer. */
const hostVethOf = (sandbox: string) => {
  const eth0 = links(sandbox).find((link) => link.ifname === "eth0")
  if (!eth0?.link_index) throw new Error(`no eth0 with a peer in ${sandbox}`)
  return links().find((link) => link.ifindex === eth0.link_index)
}

// bun runs no afterAll on a signal: clean up here too (only when enabled, so a plain
// `bun test` keeps the other files' signal handlers in charge)
if (ENABLED) {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      daemon?.kill("SIGTERM")
      cleanupOwnRuns()
      release?.()
      process.exit(130)
    })
  }
}

describe.skipIf(!ENABLED)(`podman 4.3 with the CNI plugins of ${PLUGIN_DIR}${RESIDENT ? ", served by tscni daemon" : ""}`, () => {
  beforeAll(async () => {
    if (!ENABLED) return
    release = await acquireLock()
    if (RESIDENT) {
      daemon = Bun.spawn([join(residentDir, "tscni"), "daemon", "--socket", DAEMON_SOCKET, "--health-listen", "off"], { stdout: "ignore", stderr: "inherit" })
      for (let waited = 0; !existsSync(DAEMON_SOCKET); waited += 20) {
        if (waited > 5000) throw new Error("tscni daemon did not start")
        await Bun.sleep(20)
      }
    }
    const stale = cleanupStaleRuns()
    if (stale.length > 0) console.warn(`e2e: cleaned up after an earlier run:\n  ${stale.join("\n  ")}`)
    const problems = preflight([PLUGIN_DIR], [V4.bridge, DS.bridge], [...V4.subnets, ...DS.subnets])
    if (problems.length > 0) throw new Error(`e2e preflight:\n  ${problems.join("\n  ")}`)
    baseline = { veths: hostVeths(), rules: ruleTexts(), elements: elementTexts() }
    podman = createPodman([{ name: "ours", pluginDir: PLUGIN_DIR }])
    conf = podman.state.confs[0]!
    logFile = join(podman.state.dir, "tscni.log")
    for (const spec of [V4, DS]) {
      const created = createNetwork(podman, conf, spec)
      conflists[spec.name] = created.conflist
      notes.push(...created.notes)
    }
    if (notes.length > 0) console.warn(`e2e: ${notes.join("; ")}`)
  }, TIMEOUT)

  afterAll(async () => {
    if (!ENABLED) return
    try {
      if (logFile && existsSync(logFile)) {
        const log = readFileSync(logFile, "utf8").trim()
        if (log !== "") console.warn(`e2e: plugin log (TSCNI_LOG_FILE):\n${log.split("\n").slice(-60).join("\n")}`)
      }
      const extra = cleanupOwnRuns()
      if (extra.length > 0) console.warn(`e2e cleanup removed what podman's teardown left:\n  ${extra.join("\n  ")}`)
    } finally {
      if (daemon !== undefined) {
        daemon.kill("SIGTERM")
        await daemon.exited
      }
      if (RESIDENT) rmSync(residentDir, { recursive: true, force: true })
      release?.()
    }
  }, TIMEOUT)

  test("podman network create writes bridge → portmap → firewall → tuning and podman loads it with these plugins", () => {
    for (const spec of [V4, DS]) {
      const conflist = conflists[spec.name]!
      expect(conflist.cniVersion).toBe("0.4.0")
      expect(conflist.plugins.map((plugin: { type: string }) => plugin.type))
        .toEqual(PODMAN_CHAIN.filter((type) => existsSync(join(PLUGIN_DIR, type))))
      expect(conflist.plugins[0].ipam.type).toBe("host-local")
      // podman loads a network only if every plugin answered VERSION with 0.4.0 in it
      const listed = JSON.parse(pod("network", "ls", "--format", "json")) as Array<{ name: string }>
      expect(listed.map((network) => network.name)).toContain(spec.name)
      const inspected = (JSON.parse(pod("network", "inspect", spec.name)) as Array<Record<string, any>>)[0]!
      expect(inspected.network_interface).toBe(spec.bridge)
      expect(inspected.subnets.map((subnet: { subnet: string }) => subnet.subnet)).toEqual([...spec.subnets])
    }
  }, TIMEOUT)

  test("a container on the network gets its address and default route", () => {
    start("e2e-a", V4.name, [], ["sleep", "3600"])
    const a = attachment("e2e-a", V4.name)
    expect(a.ipv4).toMatch(/^10\.250\.1\.\d+$/)
    expect(a.gateway).toBe("10.250.1.1")

    // seen by busybox inside the container
    expect(pod("exec", "e2e-a", "ip", "-4", "addr", "show", "dev", "eth0")).toContain(`inet ${a.ipv4}/24`)
    expect(pod("exec", "e2e-a", "ip", "route")).toMatch(/^default via 10\.250\.1\.1 dev eth0/m)

    // seen by iproute2 in the container's namespace
    const eth0 = links(a.sandbox).find((link) => link.ifname === "eth0")!
    expect(eth0.operstate).toBe("UP")
    expect(eth0.addr_info!.filter((addr) => addr.family === "inet").map((addr) => `${addr.local}/${addr.prefixlen}`))
      .toEqual([`${a.ipv4}/24`])
    expect(routes(a.sandbox, "-4")).toContainEqual(expect.objectContaining({ dst: "default", gateway: "10.250.1.1", dev: "eth0" }))
    expect(links(a.sandbox).find((link) => link.ifname === "lo")?.operstate).toBe("UNKNOWN")

    // and on the host: the bridge holds the gateway, the container's peer is its port
    const bridge = links().find((link) => link.ifname === V4.bridge)!
    expect(bridge.kind).toBe("bridge")
    expect(bridge.addr_info!.map((addr) => `${addr.local}/${addr.prefixlen}`)).toContain("10.250.1.1/24")
    const veth = hostVethOf(a.sandbox)
    expect(veth?.kind).toBe("veth")
    expect(veth?.master).toBe(V4.bridge)
    expect(ipamAllocations(V4.name)).toContain(a.ipv4)
  }, TIMEOUT)

  test("two containers ping each other", () => {
    if (podRun("container", "exists", "e2e-a").exitCode !== 0) start("e2e-a", V4.name, [], ["sleep", "3600"])
    start("e2e-b", V4.name, [], ["sleep", "3600"])
    const a = attachment("e2e-a", V4.name)
    const b = attachment("e2e-b", V4.name)
    expect(b.ipv4).not.toBe(a.ipv4)
    expect(pod("exec", "e2e-a", "ping", "-c", "2", "-W", "3", b.ipv4)).toContain("2 packets received")
    expect(pod("exec", "e2e-b", "ping", "-c", "2", "-W", "3", a.ipv4)).toContain("2 packets received")
    expect(pod("exec", "e2e-b", "ping", "-c", "1", "-W", "3", a.gateway)).toContain("1 packets received")
  }, TIMEOUT)

  test("-p HOSTPORT:80 reaches busybox httpd from the host", async () => {
    const port = freePort()
    start("e2e-web", V4.name, ["-p", `${port}:80`], ["httpd", "-f", "-p", "80", "-h", "/www"])
    expect(await fetchText(`http://127.0.0.1:${port}/`)).toBe("tscni-e2e httpd\n")
    // and from another container, through the host port on the bridge address (hairpin/DNAT)
    if (podRun("container", "exists", "e2e-a").exitCode === 0) {
      // (busybox-static 1.35's `wget -T` segfaults: bound it with `timeout` instead)
      expect(pod("exec", "e2e-a", "timeout", "5", "wget", "-q", "-O", "-", `http://10.250.1.1:${port}/`)).toBe("tscni-e2e httpd\n")
    }
  }, TIMEOUT)

  test("dual stack: IPv4 and IPv6 addresses, both default routes, ping and ping6, -p on both families", async () => {
    const port = freePort()
    start("e2e-ds-a", DS.name, ["-p", `${port}:80`], ["httpd", "-f", "-p", "80", "-h", "/www"])
    start("e2e-ds-b", DS.name, [], ["sleep", "3600"])
    const a = attachment("e2e-ds-a", DS.name)
    const b = attachment("e2e-ds-b", DS.name)
    for (const c of [a, b]) {
      expect(c.ipv4).toMatch(/^10\.250\.2\.\d+$/)
      expect(c.ipv6).toMatch(/^fd00:250:2::[0-9a-f]+$/)
      expect(c.gateway6).toBe("fd00:250:2::1")
      const eth0 = links(c.sandbox).find((link) => link.ifname === "eth0")!
      const globals = eth0.addr_info!.filter((addr) => addr.scope === "global").map((addr) => `${addr.local}/${addr.prefixlen}`)
      expect(globals.sort()).toEqual([`${c.ipv4}/24`, `${c.ipv6}/64`].sort())
      expect(routes(c.sandbox, "-4")).toContainEqual(expect.objectContaining({ dst: "default", gateway: "10.250.2.1" }))
      expect(routes(c.sandbox, "-6")).toContainEqual(expect.objectContaining({ dst: "default", gateway: "fd00:250:2::1" }))
      expect(pod("exec", c.name, "ip", "-6", "route")).toMatch(/^default via fd00:250:2::1 dev eth0/m)
      expect(ipamAllocations(DS.name)).toEqual(expect.arrayContaining([c.ipv4, c.ipv6]))
    }
    const bridge = links().find((link) => link.ifname === DS.bridge)!
    expect(bridge.addr_info!.map((addr) => `${addr.local}/${addr.prefixlen}`)).toEqual(expect.arrayContaining(["10.250.2.1/24", "fd00:250:2::1/64"]))
    expect(pod("exec", "e2e-ds-a", "ping", "-c", "2", "-W", "3", b.ipv4)).toContain("2 packets received")
    expect(pod("exec", "e2e-ds-b", "ping6", "-c", "2", "-W", "3", a.ipv6)).toContain("2 packets received")
    expect(pod("exec", "e2e-ds-a", "ping6", "-c", "2", "-W", "3", b.ipv6)).toContain("2 packets received")
    expect(pod("exec", "e2e-ds-b", "ping6", "-c", "1", "-W", "3", "fd00:250:2::1")).toContain("1 packets received")
    expect(await fetchText(`http://127.0.0.1:${port}/`)).toBe("tscni-e2e httpd\n")
    // the host's own address on the test bridge: IPv6 DNAT for a local destination
    expect(await fetchText(`http://[fd00:250:2::1]:${port}/`)).toBe("tscni-e2e httpd\n")
  }, TIMEOUT)

  test("six containers started in parallel get distinct addresses and working port mappings", async () => {
    const names = Array.from({ length: 6 }, (_, i) => `e2e-par${i}`)
    const ports = names.map(() => freePort())
    const env = podmanEnv(podman.state, conf, { TSCNI_LOG_FILE: logFile })
    const runs = names.map((name, i) =>
      Bun.spawn(podmanArgv(podman.state, ["run", "-d", "--name", name, "--network", V4.name, "-p", `${ports[i]}:80`, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]), {
        env,
        stdout: "pipe",
        stderr: "pipe"
      }))
    const outcomes = await Promise.all(runs.map(async (proc) => ({ exitCode: await proc.exited, stderr: await new Response(proc.stderr).text() })))
    expect(outcomes.filter((outcome) => outcome.exitCode !== 0)).toEqual([])
    const addresses = names.map((name) => attachment(name, V4.name).ipv4)
    expect(new Set(addresses).size).toBe(names.length)
    const bodies = await Promise.all(ports.map((port) => fetchText(`http://127.0.0.1:${port}/`)))
    expect(bodies).toEqual(names.map(() => "tscni-e2e httpd\n"))
  }, TIMEOUT)

  // Was a bridge bug found by this test: the second network's default route failed with
  // EEXIST. Routes are now appended (NLM_F_APPEND) as the reference's RouteAddEcmp does.
  test("a container on two networks gets an address and a default route on each (run --network a,b; network connect)", () => {
    try {
      start("e2e-two", `${V4.name},${DS.name}`, [], ["sleep", "3600"])
      const two = inspect(podman, conf, "e2e-two")
      const sandbox = two.NetworkSettings.SandboxKey as string
      const eths = links(sandbox).filter((link) => /^eth\d$/.test(link.ifname))
      expect(eths.length).toBe(2)
      const gateways = routes(sandbox, "-4").filter((route) => route.dst === "default").map((route) => route.gateway).sort()
      expect(gateways).toEqual(["10.250.1.1", "10.250.2.1"])
      expect(pod("exec", "e2e-two", "ping", "-c", "1", "-W", "3", "10.250.2.1")).toContain("1 packets received")

      start("e2e-conn", V4.name, [], ["sleep", "3600"])
      pod("network", "connect", DS.name, "e2e-conn")
      const connected = attachment("e2e-conn", DS.name)
      expect(connected.ipv4).toMatch(/^10\.250\.2\.\d+$/)
      pod("network", "disconnect", DS.name, "e2e-conn")
      expect(ipamAllocations(DS.name)).not.toContain(connected.ipv4)
    } finally {
      podRun("rm", "--force", "--time", "0", "e2e-two", "e2e-conn")
    }
  }, TIMEOUT)

  test("podman rm -f leaves no veth, no host-local allocation, no nftables rule or element, no libcni cache entry", () => {
    // one of each kind at least, whatever the tests before managed to start
    const port = freePort()
    start("e2e-rm", DS.name, ["-p", `${port}:80`], ["httpd", "-f", "-p", "80", "-h", "/www"])
    const running = (JSON.parse(pod("ps", "-a", "--format", "json")) as Array<{ Names: Array<string>; Networks: Array<string> }>)
    expect(running.length).toBeGreaterThan(0)
    for (const container of running) {
      const name = container.Names[0]!
      const network = container.Networks[0]!
      const c = attachment(name, network)
      if (!c.sandbox) {
        // never got a network (a test before failed): nothing to observe
        pod("rm", "--force", "--time", "0", name)
        continue
      }
      const ips = [c.ipv4, c.ipv6].filter((ip) => ip !== undefined && ip !== "")
      const veth = hostVethOf(c.sandbox)!
      const cache = join(CNI_RESULTS_DIR, `${network}-${c.id}-eth0`)
      // present while the container runs
      expect(veth.master).toBe(network === V4.name ? V4.bridge : DS.bridge)
      expect(ipamAllocations(network)).toEqual(expect.arrayContaining(ips))
      expect(existsSync(cache)).toBe(true)
      // the pod's masquerade (and hostPort) state: elements of its network's keyed tables
      const mentions = () => nftElements().filter((element) => ips.some((ip) => element.text.includes(`"${ip}"`)))
      expect(mentions().length).toBeGreaterThan(0)

      pod("rm", "--force", "--time", "0", name)

      expect(links().some((link) => link.ifname === veth.ifname)).toBe(false)
      for (const ip of ips) expect(ipamAllocations(network)).not.toContain(ip)
      expect(mentions().map((element) => `${element.family} ${element.table} ${element.set}: ${element.text}`)).toEqual([])
      expect(existsSync(cache)).toBe(false)
      expect(existsSync(c.sandbox)).toBe(false)
    }
    // nothing new on the host compared with before the first container
    expect([...hostVeths()].filter((name) => !baseline.veths.has(name))).toEqual([])
    expect([...ruleTexts()].filter((text) => !baseline.rules.has(text))).toEqual([])
    expect([...elementTexts()].filter((text) => !baseline.elements.has(text))).toEqual([])
    expect(ipamAllocations(V4.name)).toEqual([])
    expect(ipamAllocations(DS.name)).toEqual([])
  }, TIMEOUT)

  test("podman network rm leaves no bridge behind", () => {
    for (const spec of [V4, DS]) {
      pod("network", "rm", "--force", spec.name)
      expect(links().some((link) => link.ifname === spec.bridge)).toBe(false)
    }
    expect(JSON.parse(pod("network", "ls", "--format", "json")).map((n: { name: string }) => n.name)).not.toContain(V4.name)
  }, TIMEOUT)

  test.skipIf(!RESIDENT)("the calls above were served by tscni daemon (podman's plugin log says so)", () => {
    const log = readFileSync(logFile, "utf8")
    expect(log).toContain(SERVED)
    // every ADD and DEL of bridge, host-local excepted (run in-process by bridge)
    expect(log.split("\n").filter((line) => line.includes(SERVED)).length).toBeGreaterThan(10)
  }, TIMEOUT)
})
