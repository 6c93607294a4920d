/**
 * Real-runtime harness: podman 4.3 from Debian, CNI backend, our plugins (or the reference
 * ones) found through `cni_plugin_dirs`. Everything podman keeps (containers.conf,
 * storage.conf, network configs, image store, locks, events) lives in one private state
 * directory under STATE_ROOT; nothing global is configured.
 *
 * What a run does change outside that directory, and how it is undone (`cleanup.ts`,
 * called from every test's finally path and by `cleanup.sh`), is listed in
 * docs/e2e.md. The state file `state.json` records each such thing as it is created, so a
 * run that was killed can be cleaned up later by another process.
 *
 * No bun:test import here: `podman-timing.ts` uses this file too.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"

export const REPO = resolve(import.meta.dir, "..", "..")
export const OUR_PLUGINS = join(REPO, "dist", "bin")
export const REFERENCE_PLUGINS = "/usr/lib/cni"
/** Built by setup.sh from Debian's busybox-static; imported into each run's private store. */
export const IMAGE_TAR = "/var/cache/tscni-e2e/busybox-rootfs.tar"
export const IMAGE = "localhost/tscni-e2e-busybox:latest"
export const STATE_ROOT = "/var/tmp/tscni-e2e"
export const LOCK_DIR = "/run/tscni-e2e.lock"
export const CNI_NETWORKS_DIR = "/var/lib/cni/networks"
export const CNI_RESULTS_DIR = "/var/lib/cni/results"
/** The chain `podman network create` writes (see CNI-NOTES.md, "podman 4.3 as a client"). */
export const PODMAN_CHAIN = ["bridge", "portmap", "firewall", "tuning"] as const
/** Host switches the bridge plugin turns on (and, like the reference plugin, never off). */
export const HOST_SYSCTLS = [
  "net.ipv4.ip_forward",
  "net.ipv6.conf.all.forwarding",
  "net.bridge.bridge-nf-call-iptables",
  "net.bridge.bridge-nf-call-ip6tables",
  "net.bridge.bridge-nf-call-arptables"
] as const
/** podman 4.3 lowers its own RLIMIT_NPROC to 32768 before it starts a container. */
const PODMAN_NPROC_CAP = 32768

export interface Run {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

export const sh = (argv: ReadonlyArray<string>, options: { env?: Record<string, string>; stdin?: string } = {}): Run => {
  const proc = Bun.spawnSync([...argv], {
    env: options.env ?? (process.env as Record<string, string>),
    stdout: "pipe",
    stderr: "pipe",
    ...(options.stdin !== undefined ? { stdin: Buffer.from(options.stdin) } : {})
  })
  return { exitCode: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() }
}

export const shOk = (argv: ReadonlyArray<string>, options: { env?: Record<string, string>; stdin?: string } = {}): string => {
  const out = sh(argv, options)
  if (out.exitCode !== 0) {
    throw new Error(`${argv.join(" ")} exited ${out.exitCode}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`)
  }
  return out.stdout
}

// ---------------------------------------------------------------- the state file

export interface NetworkRecord {
  readonly name: string
  readonly bridge: string
  readonly subnets: ReadonlyArray<string>
  /** the containers.conf whose network_config_dir holds this network */
  readonly conf: string
}

export interface State {
  readonly pid: number
  readonly created: string
  readonly dir: string
  readonly storageConf: string
  /** every containers.conf of this run (one per plugin flavour) */
  readonly confs: Array<string>
  networks: Array<NetworkRecord>
  /** container netns paths (podman's SandboxKey), to remove if podman could not */
  sandboxes: Array<string>
  /** container IDs, for `runc delete --force` if podman could not remove them */
  containers: Array<string>
  /** /run/netns entries before the run (podman names its own netns-<uuid>) */
  readonly netnsBefore: Array<string>
  /** a network namespace podman runs in (the timing script), else null */
  netns: string | null
  /** host sysctls before the run, restored afterwards */
  readonly sysctls: Record<string, string>
  /** host nftables tables before the run: "family name" */
  readonly nftTables: Array<string>
  /** global paths that did not exist before the run and may be removed when empty */
  readonly createdPaths: Array<string>
}

const statePath = (dir: string) => join(dir, "state.json")
export const saveState = (state: State): void => writeFileSync(statePath(state.dir), JSON.stringify(state, null, 1))
export const loadState = (dir: string): State | undefined => {
  try {
    return JSON.parse(readFileSync(statePath(dir), "utf8")) as State
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------- host observation

export const readSysctl = (key: string): string | undefined => {
  try {
    return readFileSync(join("/proc/sys", key.replaceAll(".", "/")), "utf8").trim()
  } catch {
    return undefined
  }
}

export const nftTables = (): Array<string> =>
  sh(["nft", "list", "tables"]).stdout.split("\n")
    .map((line) => line.trim().replace(/^table /, ""))
    .filter((line) => line !== "")

export interface NftRule {
  readonly family: string
  readonly table: string
  readonly chain: string
  readonly handle: number
  readonly text: string
}

/** Every rule of the host ruleset (JSON API of nft), with its JSON as `text` for matching. */
export const nftRules = (netns?: string): Array<NftRule> => {
  const argv = netns ? ["ip", "netns", "exec", netns, "nft", "-j", "-a", "list", "ruleset"] : ["nft", "-j", "-a", "list", "ruleset"]
  const out = sh(argv)
  if (out.exitCode !== 0 || out.stdout.trim() === "") return []
  const parsed = JSON.parse(out.stdout) as { nftables: Array<Record<string, any>> }
  return parsed.nftables
    .filter((entry) => entry.rule !== undefined)
    .map((entry) => {
      const rule = entry.rule as Record<string, any>
      return { family: rule.family, table: rule.table, chain: rule.chain, handle: rule.handle, text: JSON.stringify(rule) }
    })
}

/** tscni's keyed tables (ADR 0004): `tscni-<kind>-<network hash>-<skeleton hash>`, made by a network's first pod and left by its last. */
export const TSCNI_KEYED_TABLE = /^tscni-[a-z]+-[0-9a-f]{8}-[0-9a-f]{8}$/

export interface NftElement {
  readonly family: string
  readonly table: string
  readonly set: string
  /** the element as nft -j prints it (key, value of a map, comment) */
  readonly text: string
}

/** Every element of every set and map in the ruleset (the host's, or a namespace's). */
export const nftElements = (netns?: string): Array<NftElement> => {
  const argv = netns ? ["ip", "netns", "exec", netns, "nft", "-j", "list", "ruleset"] : ["nft", "-j", "list", "ruleset"]
  const out = sh(argv)
  if (out.exitCode !== 0 || out.stdout.trim() === "") return []
  const parsed = JSON.parse(out.stdout) as { nftables: Array<Record<string, any>> }
  return parsed.nftables.flatMap((entry) => {
    const set = (entry.set ?? entry.map) as Record<string, any> | undefined
    if (set === undefined) return []
    return ((set.elem ?? []) as Array<unknown>).map((elem) => ({ family: set.family, table: set.table, set: set.name, text: JSON.stringify(elem) }))
  })
}

export interface LinkInfo {
  readonly ifname: string
  readonly ifindex: number
  readonly master?: string
  readonly ifalias?: string
  readonly kind?: string
  readonly operstate?: string
  readonly link_index?: number
  readonly addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string }>
}

/** `ip -j -d addr` of the host (or of a netns path): links with their kind, master and addresses. */
export const links = (netnsPath?: string): Array<LinkInfo> => {
  const argv = ["ip", "-j", "-d", "addr", "show"]
  const out = shOk(netnsPath ? ["nsenter", `--net=${netnsPath}`, ...argv] : argv)
  return (JSON.parse(out) as Array<Record<string, any>>).map((link) => ({
    ...link,
    kind: link.linkinfo?.info_kind
  }) as LinkInfo)
}

export interface RouteInfo {
  readonly dst: string
  readonly gateway?: string
  readonly dev?: string
}
export const routes = (netnsPath: string, family: "-4" | "-6"): Array<RouteInfo> =>
  JSON.parse(shOk(["nsenter", `--net=${netnsPath}`, "ip", "-j", family, "route", "show"])) as Array<RouteInfo>

/** Files host-local keeps for allocated addresses (its other files are bookkeeping). */
export const ipamAllocations = (network: string): Array<string> => {
  const dir = join(CNI_NETWORKS_DIR, network)
  if (!existsSync(dir)) return []
  return readdirSync(dir).filter((name) => /^[0-9.]+$/.test(name) || name.includes(":"))
}

// ---------------------------------------------------------------- the lock

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // a killed process can stay a zombie for a while (PID 1 here reaps slowly)
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}

/** One e2e or timing run at a time on a host: they share network names and subnets. */
export const acquireLock = async (waitMs = 15 * 60_000): Promise<() => void> => {
  const deadline = Date.now() + waitMs
  for (;;) {
    try {
      mkdirSync(LOCK_DIR)
      writeFileSync(join(LOCK_DIR, "pid"), String(process.pid))
      return () => rmSync(LOCK_DIR, { recursive: true, force: true })
    } catch {
      let holder = 0
      try {
        holder = Number(readFileSync(join(LOCK_DIR, "pid"), "utf8"))
      } catch { /* being written or removed */ }
      if (holder > 0 && !pidAlive(holder)) rmSync(LOCK_DIR, { recursive: true, force: true })
      else if (Date.now() > deadline) throw new Error(`${LOCK_DIR} is held by pid ${holder}`)
      else await Bun.sleep(500)
    }
  }
}

// ---------------------------------------------------------------- preflight

/** What must hold before a run may touch the host; an empty list means go. */
export const preflight = (pluginDirs: ReadonlyArray<string>, bridges: ReadonlyArray<string>, subnets: ReadonlyArray<string>): Array<string> => {
  const problems: Array<string> = []
  if (process.getuid?.() !== 0) problems.push("must run as root")
  for (const tool of ["podman", "runc", "nsenter", "nft", "ip"]) {
    if (sh(["sh", "-c", `command -v ${tool}`]).exitCode !== 0) problems.push(`${tool} is not installed (run tests/e2e/setup.sh)`)
  }
  if (!existsSync(IMAGE_TAR)) problems.push(`${IMAGE_TAR} is missing (run tests/e2e/setup.sh)`)
  for (const dir of pluginDirs) {
    for (const plugin of ["bridge", "host-local", "portmap"]) {
      if (!existsSync(join(dir, plugin))) problems.push(`${join(dir, plugin)} is missing`)
    }
  }
  if (problems.length > 0) return problems
  const hostLinks = links()
  for (const bridge of bridges) {
    if (hostLinks.some((link) => link.ifname === bridge)) problems.push(`a link named ${bridge} already exists: not ours, not touching it`)
  }
  // A test subnet must not be in use on this host (it would shadow real routes).
  const used = [
    sh(["ip", "-j", "route", "show", "table", "all"]).stdout,
    sh(["ip", "-j", "-6", "route", "show", "table", "all"]).stdout,
    sh(["ip", "-j", "addr", "show"]).stdout
  ].join("")
  for (const subnet of subnets) {
    // 10.250.1.0/24 -> "10.250.1." ; fd00:250:2::/64 -> "fd00:250:2:"
    const stem = subnet.replace(/\/\d+$/, "").replace(/(\.0|::)$/, (tail) => (tail === "::" ? ":" : "."))
    if (used.includes(`"${stem}`)) problems.push(`${subnet} is already in use on this host`)
  }
  return problems
}

// ---------------------------------------------------------------- a podman environment

export interface Podman {
  readonly state: State
  /** podman with one of this run's containers.conf files; `netns` runs it inside that namespace */
  readonly run: (conf: string, args: ReadonlyArray<string>, extraEnv?: Record<string, string>) => Run
  readonly ok: (conf: string, args: ReadonlyArray<string>, extraEnv?: Record<string, string>) => string
}

export const podmanEnv = (state: State, conf: string, extra: Record<string, string> = {}): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    // our own settings win; a caller's CONTAINERS_* must not leak in
    if (value !== undefined && !key.startsWith("CONTAINERS_") && !key.startsWith("TSCNI_")) env[key] = value
  }
  return { ...env, CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: state.storageConf, ...extra }
}

export const podmanArgv = (state: State, args: ReadonlyArray<string>): Array<string> =>
  state.netns ? ["nsenter", `--net=/run/netns/${state.netns}`, "podman", ...args] : ["podman", ...args]

/** This process's hard limit (what `ulimit -H` shows), from /proc/self/limits. */
const hardLimit = (name: "Max open files" | "Max processes"): string => {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith(name))
  const fields = line?.slice(name.length).trim().split(/\s+/)
  if (!fields || fields.length < 2) throw new Error(`/proc/self/limits has no "${name}"`)
  return fields[1]!
}

const toml = (value: string) => JSON.stringify(value)

export interface Flavour {
  /** short name, used in file names */
  readonly name: string
  readonly pluginDir: string
}

/**
 * Creates the private state directory with one containers.conf per flavour (each with its
 * own network_config_dir), a storage.conf, and the image imported into that store.
 */
export const createPodman = (flavours: ReadonlyArray<Flavour>, options: { netns?: string } = {}): Podman => {
  mkdirSync(STATE_ROOT, { recursive: true })
  const dir = join(STATE_ROOT, `run-${process.pid}-${Date.now().toString(36)}`)
  mkdirSync(dir, { recursive: true })
  const sysctls: Record<string, string> = {}
  for (const key of HOST_SYSCTLS) {
    const value = readSysctl(key)
    if (value !== undefined) sysctls[key] = value
  }
  const createdPaths = ["/var/lib/cni", CNI_NETWORKS_DIR, CNI_RESULTS_DIR, "/var/lib/containers", "/run/runc"]
    .filter((path) => !existsSync(path))
  const storageConf = join(dir, "storage.conf")
  writeFileSync(storageConf, [
    "[storage]",
    // vfs: no mounts to leak, and the image is 2 MB
    `driver = "vfs"`,
    `graphroot = ${toml(join(dir, "storage"))}`,
    `runroot = ${toml(join(dir, "runroot"))}`,
    ""
  ].join("\n"))
  const nofile = hardLimit("Max open files")
  const nprocHard = hardLimit("Max processes")
  const nproc = nprocHard === "unlimited" ? PODMAN_NPROC_CAP : Math.min(Number(nprocHard), PODMAN_NPROC_CAP)
  const confs: Array<string> = []
  for (const flavour of flavours) {
    const netDir = join(dir, `net.d-${flavour.name}`)
    mkdirSync(netDir, { recursive: true })
    const conf = join(dir, `containers-${flavour.name}.conf`)
    writeFileSync(conf, [
      "[containers]",
      // root here lacks CAP_SYS_RESOURCE: ask for no more than the hard limits
      `default_ulimits = [${toml(`nofile=${nofile}:${nofile}`)}, ${toml(`nproc=${nproc}:${nproc}`)}]`,
      "",
      "[network]",
      `network_backend = "cni"`,
      `cni_plugin_dirs = [${toml(flavour.pluginDir)}]`,
      `network_config_dir = ${toml(netDir)}`,
      // never used (every container names its network), but kept off real subnets
      `default_network = "tscni-e2e-default"`,
      `default_subnet = "10.250.255.0/24"`,
      "",
      "[engine]",
      // crun fails on this machine's cgroup setup; runc works
      `runtime = "runc"`,
      // no systemd as PID 1
      `cgroup_manager = "cgroupfs"`,
      `events_logger = "file"`,
      `events_logfile_path = ${toml(join(dir, "events.log"))}`,
      // file locks in tmp_dir instead of the host-wide /dev/shm/libpod_lock
      `lock_type = "file"`,
      `tmp_dir = ${toml(join(dir, "tmp"))}`,
      `static_dir = ${toml(join(dir, "storage", "libpod"))}`,
      `volume_path = ${toml(join(dir, "storage", "volumes"))}`,
      ""
    ].join("\n"))
    confs.push(conf)
  }
  const state: State = {
    pid: process.pid,
    created: new Date().toISOString(),
    dir,
    storageConf,
    confs,
    networks: [],
    sandboxes: [],
    containers: [],
    netnsBefore: existsSync("/run/netns") ? readdirSync("/run/netns") : [],
    netns: options.netns ?? null,
    sysctls,
    nftTables: nftTables(),
    createdPaths
  }
  saveState(state)
  if (options.netns) {
    shOk(["ip", "netns", "add", options.netns])
    shOk(["ip", "-n", options.netns, "link", "set", "lo", "up"])
  }
  const run = (conf: string, args: ReadonlyArray<string>, extraEnv: Record<string, string> = {}): Run =>
    sh(podmanArgv(state, args), { env: podmanEnv(state, conf, extraEnv) })
  const ok = (conf: string, args: ReadonlyArray<string>, extraEnv: Record<string, string> = {}): string => {
    const out = run(conf, args, extraEnv)
    if (out.exitCode !== 0) throw new Error(`podman ${args.join(" ")} exited ${out.exitCode}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`)
    return out.stdout
  }
  ok(confs[0]!, ["import", "--quiet", "--change", "CMD=/bin/sh", IMAGE_TAR, IMAGE])
  return { state, run, ok }
}

export interface NetworkSpec {
  readonly name: string
  readonly bridge: string
  readonly subnets: ReadonlyArray<string>
  readonly ipv6?: boolean
}

/**
 * `podman network create`, then the bridge renamed from podman's cni-podmanN to a name we
 * chose (podman 4.3 has no option for it). If a plugin of podman's chain is missing from
 * the flavour's plugin dir (firewall and tuning were written after the others), it is
 * taken out of the conflist and the returned note says so.
 */
export const createNetwork = (podman: Podman, conf: string, spec: NetworkSpec): { conflist: Record<string, any>; notes: Array<string> } => {
  const record: NetworkRecord = { name: spec.name, bridge: spec.bridge, subnets: spec.subnets, conf }
  podman.state.networks.push(record)
  saveState(podman.state)
  const args = ["network", "create", ...(spec.ipv6 ? ["--ipv6"] : []), ...spec.subnets.flatMap((subnet) => ["--subnet", subnet]), spec.name]
  podman.ok(conf, args)
  const file = join(networkConfigDir(conf), `${spec.name}.conflist`)
  const conflist = JSON.parse(readFileSync(file, "utf8")) as Record<string, any>
  const notes: Array<string> = []
  const pluginDir = cniPluginDir(conf)
  conflist.plugins = (conflist.plugins as Array<Record<string, any>>).filter((plugin) => {
    if (existsSync(join(pluginDir, plugin.type))) return true
    notes.push(`${plugin.type} is not in ${pluginDir}: taken out of ${spec.name}`)
    return false
  })
  const bridge = conflist.plugins.find((plugin: Record<string, any>) => plugin.type === "bridge")
  if (!bridge) throw new Error(`${file} has no bridge plugin`)
  bridge.bridge = spec.bridge
  writeFileSync(file, JSON.stringify(conflist, null, 3))
  return { conflist, notes }
}

const confValue = (conf: string, key: string): string => {
  const match = new RegExp(`^${key} = (.*)$`, "m").exec(readFileSync(conf, "utf8"))
  if (!match) throw new Error(`${conf} has no ${key}`)
  const value = JSON.parse(match[1]!.startsWith("[") ? match[1]! : `[${match[1]}]`) as Array<string>
  return value[0]!
}
export const networkConfigDir = (conf: string): string => confValue(conf, "network_config_dir")
export const cniPluginDir = (conf: string): string => confValue(conf, "cni_plugin_dirs")

/** `podman inspect` of one container, with its network namespace recorded for cleanup. */
export const inspect = (podman: Podman, conf: string, name: string): Record<string, any> => {
  const info = (JSON.parse(podman.ok(conf, ["inspect", name])) as Array<Record<string, any>>)[0]!
  const sandbox = info.NetworkSettings?.SandboxKey as string | undefined
  const id = info.Id as string | undefined
  let changed = false
  if (sandbox && !podman.state.sandboxes.includes(sandbox)) {
    podman.state.sandboxes.push(sandbox)
    changed = true
  }
  if (id && !podman.state.containers.includes(id)) {
    podman.state.containers.push(id)
    changed = true
  }
  if (changed) saveState(podman.state)
  return info
}

/** Starts a detached container and records its network namespace. */
export const runDetached = (
  podman: Podman,
  conf: string,
  name: string,
  args: ReadonlyArray<string>,
  command: ReadonlyArray<string>,
  extraEnv: Record<string, string> = {}
): Record<string, any> => {
  podman.ok(conf, ["run", "-d", "--name", name, ...args, IMAGE, ...command], extraEnv)
  return inspect(podman, conf, name)
}

export const stateDirs = (): Array<string> => {
  if (!existsSync(STATE_ROOT)) return []
  return readdirSync(STATE_ROOT)
    .map((name) => join(STATE_ROOT, name))
    .filter((path) => statSync(path).isDirectory())
}

export const isStale = (dir: string): boolean => {
  const state = loadState(dir)
  return state === undefined || !pidAlive(state.pid)
}
