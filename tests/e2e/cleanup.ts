/**
 * Undoes one e2e/timing run from its state file, in the order that lets each layer clean
 * up the next: podman first (its DEL runs the plugins' own cleanup), then whatever podman
 * or a plugin left: containers' namespaces, our veths and bridges, nftables rules that
 * name our subnets or bridges, host-local files, libcni cache entries, host sysctls,
 * global directories the run created, the namespace podman ran in, the state directory.
 *
 * Only things the state file names are touched: our network names, our bridge names, our
 * subnets, the sandboxes podman reported for our containers.
 *
 * `bun tests/e2e/cleanup.ts` (what cleanup.sh runs) cleans every run whose process is
 * gone; `--force` also those whose process still runs.
 */
import { existsSync, readdirSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync } from "node:fs"
import { basename, join } from "node:path"
import {
  CNI_NETWORKS_DIR,
  CNI_RESULTS_DIR,
  isStale,
  links,
  loadState,
  nftRules,
  TSCNI_KEYED_TABLE,
  nftTables,
  podmanArgv,
  podmanEnv,
  readSysctl,
  sh,
  stateDirs,
  STATE_ROOT,
  type State
} from "./podman.ts"

/** Strings that only our rules contain: subnet stems and bridge names. */
const markers = (state: State): Array<string> => [
  ...state.networks.flatMap((network) =>
    network.subnets.map((subnet) => subnet.replace(/\/\d+$/, "").replace(/(\.0|::)$/, (tail) => (tail === "::" ? ":" : ".")))),
  ...state.networks.map((network) => `"${network.bridge}"`)
]

const processesNaming = (text: string): Array<number> => {
  const pids: Array<number> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text)) pids.push(Number(entry))
    } catch { /* gone */ }
  }
  return pids
}

const childrenOf = (parent: number): Array<number> => {
  const children: Array<number> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // "pid (comm) state ppid …": comm may hold spaces, so split after the last ")"
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      if (ppid === parent) children.push(Number(entry), ...childrenOf(Number(entry)))
    } catch { /* gone */ }
  }
  return children
}

const killPid = (pid: number): void => {
  try {
    process.kill(pid, "SIGKILL")
  } catch { /* gone */ }
}

/**
 * Containers runc still runs for this run (recorded IDs, or a runc state naming the run
 * dir): `runc delete --force` stops them and drops runc's state in /run/runc. Then conmon,
 * which names the run dir on its command line, and whatever it still has as children.
 */
const stopLeftovers = (dir: string, ids: ReadonlyArray<string>, extra: Array<string>): void => {
  const runcRoot = "/run/runc"
  const ours = new Set(ids.filter((id) => existsSync(join(runcRoot, id))))
  if (existsSync(runcRoot)) {
    for (const id of readdirSync(runcRoot)) {
      try {
        if (readFileSync(join(runcRoot, id, "state.json"), "utf8").includes(`${dir}/`)) ours.add(id)
      } catch { /* not a runc state */ }
    }
  }
  for (const id of ours) {
    sh(["runc", "delete", "--force", id])
    extra.push(`runc container ${id.slice(0, 12)}`)
  }
  for (const pid of processesNaming(dir)) {
    for (const child of childrenOf(pid)) killPid(child)
    killPid(pid)
    extra.push(`process ${pid} (and its children)`)
  }
}

/**
 * Unmounts what podman left mounted under the run dir (a tmpfs on each container's
 * userdata/shm), deepest first, then removes the dir, its state file last: a removal that
 * fails half-way leaves the state for the next cleanup.
 */
const removeRunDir = (dir: string, extra: Array<string>): void => {
  if (!existsSync(dir)) return
  stopLeftovers(dir, [], extra)
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((mountPoint) => mountPoint.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length)
  for (const mountPoint of mounts) {
    sh(["umount", "--lazy", mountPoint])
    extra.push(`mount ${mountPoint}`)
  }
  for (const entry of readdirSync(dir)) {
    if (entry !== "state.json") rmSync(join(dir, entry), { recursive: true, force: true })
  }
  rmSync(dir, { recursive: true, force: true })
}

const removeEmptyDir = (path: string): void => {
  try {
    if (existsSync(path) && readdirSync(path).length === 0) rmdirSync(path)
  } catch { /* in use */ }
}

/** Returns what it had to remove beyond podman's own teardown (empty = podman and the plugins cleaned up everything). */
export const cleanupRun = (dir: string): Array<string> => {
  const state = loadState(dir)
  const extra: Array<string> = []
  if (!state) {
    removeRunDir(dir, extra)
    return extra
  }
  const netnsAlive = state.netns !== null && existsSync(`/run/netns/${state.netns}`)
  const viaPodman = state.netns === null || netnsAlive

  // 1. podman: every container (its network teardown runs the plugins' DEL), every network
  if (viaPodman && sh(["sh", "-c", "command -v podman"]).exitCode === 0) {
    for (const conf of state.confs) {
      if (!existsSync(conf)) continue
      const env = podmanEnv(state, conf)
      const rm = sh(podmanArgv(state, ["rm", "--all", "--force", "--time", "0"]), { env })
      if (rm.exitCode !== 0) extra.push(`podman rm --all failed: ${rm.stderr.trim()}`)
      for (const network of state.networks.filter((n) => n.conf === conf)) {
        const out = sh(podmanArgv(state, ["network", "rm", "--force", network.name]), { env })
        if (out.exitCode !== 0 && !out.stderr.includes("network not found")) extra.push(`podman network rm ${network.name}: ${out.stderr.trim()}`)
      }
    }
  }

  // 1b. containers podman could not stop (its database gone), and their conmon
  stopLeftovers(dir, state.containers ?? [], extra)

  // 2. container namespaces podman did not remove
  for (const sandbox of state.sandboxes) {
    if (!sandbox.startsWith("/run/netns/") && !sandbox.startsWith("/var/run/netns/")) continue
    if (existsSync(sandbox)) {
      sh(["ip", "netns", "delete", basename(sandbox)])
      if (existsSync(sandbox)) rmSync(sandbox, { force: true })
      extra.push(`container netns ${sandbox}`)
    }
  }

  // 2b. a netns podman made for a container whose start was cut short (never inspected):
  // new since the run began, no process inside, nothing in it but lo and our addresses
  if (state.netnsBefore !== undefined && existsSync("/run/netns")) {
    const began = Date.parse(state.created)
    const marks = markers(state)
    for (const name of readdirSync("/run/netns")) {
      const path = join("/run/netns", name)
      if (!name.startsWith("netns-") || state.netnsBefore.includes(name)) continue
      try {
        if (statSync(path).mtimeMs < began) continue
        if (sh(["ip", "netns", "pids", name]).stdout.trim() !== "") continue
        const inside = links(path)
        const onlyOurs = inside.every((link) =>
          link.ifname === "lo" || (link.addr_info ?? []).every((addr) => addr.scope === "link" || marks.some((mark) => addr.local.startsWith(mark))))
        if (!onlyOurs) continue
      } catch {
        continue
      }
      sh(["ip", "netns", "delete", name])
      extra.push(`container netns ${path} (start cut short)`)
    }
  }

  // 3. host veths and bridges of our networks (in the namespace podman ran in, if any)
  const where = state.netns !== null ? (netnsAlive ? `/run/netns/${state.netns}` : undefined) : undefined
  if (state.netns === null || where !== undefined) {
    const ipIn = where ? ["nsenter", `--net=${where}`, "ip"] : ["ip"]
    const bridges = new Set(state.networks.map((network) => network.bridge))
    const aliases = state.networks.map((network) => `tscni:${network.name}/`)
    for (const link of links(where)) {
      const ours = (link.kind === "veth" && link.master !== undefined && bridges.has(link.master)) ||
        (link.ifalias !== undefined && aliases.some((alias) => link.ifalias!.startsWith(alias)))
      if (ours) {
        sh([...ipIn, "link", "delete", link.ifname])
        extra.push(`veth ${link.ifname}`)
      }
    }
    for (const link of links(where)) {
      if (bridges.has(link.ifname)) {
        sh([...ipIn, "link", "delete", link.ifname])
        extra.push(`bridge ${link.ifname}`)
      }
    }
  }

  // 4. nftables rules naming our subnets or bridges; tables the run created, once empty
  if (state.netns === null) {
    const marks = markers(state)
    for (const rule of nftRules()) {
      if (marks.some((mark) => rule.text.includes(mark))) {
        sh(["nft", "delete", "rule", rule.family, rule.table, rule.chain, "handle", String(rule.handle)])
        extra.push(`nft rule ${rule.family} ${rule.table} ${rule.chain}: ${rule.text}`)
      }
    }
    // A table that appeared during the run and holds nothing but CNI objects (rules naming
    // our subnets or bridges, chains named CNI-*, jumps to them: what iptables-based
    // reference plugins leave behind) goes as a whole; so does one left empty.
    const before = new Set(state.nftTables)
    const rules = nftRules()
    const cniOnly = (rule: (typeof rules)[number]) =>
      marks.some((mark) => rule.text.includes(mark)) || rule.chain.startsWith("CNI-") ||
      /"(jump|goto)":\{"target":"CNI-/.test(rule.text)
    for (const table of nftTables()) {
      if (before.has(table)) continue
      const [family, name] = table.split(" ")
      const inTable = rules.filter((rule) => rule.family === family && rule.table === name)
      // tscni's keyed tables (its pods' state as elements, the skeleton left by the last
      // pod for GC, which podman does not call): made during the run, they go too
      if (inTable.every(cniOnly) || TSCNI_KEYED_TABLE.test(name ?? "")) {
        sh(["nft", "delete", "table", family!, name!])
        extra.push(`nft table ${table} (${inTable.length === 0 ? "empty" : "CNI chains only"})`)
      }
    }
  }

  // 5. host-local files and libcni's result cache (both on the real filesystem, netns or not)
  for (const network of state.networks) {
    const ipamDir = join(CNI_NETWORKS_DIR, network.name)
    if (existsSync(ipamDir)) rmSync(ipamDir, { recursive: true, force: true })
    if (existsSync(CNI_RESULTS_DIR)) {
      for (const entry of readdirSync(CNI_RESULTS_DIR)) {
        if (entry.startsWith(`${network.name}-`)) {
          rmSync(join(CNI_RESULTS_DIR, entry), { force: true })
          extra.push(`libcni cache ${entry}`)
        }
      }
    }
  }

  // 6. host sysctls back to what they were (the bridge plugin never turns them off)
  if (state.netns === null) {
    for (const [key, value] of Object.entries(state.sysctls)) {
      const now = readSysctl(key)
      if (now !== undefined && now !== value) {
        try {
          writeFileSync(join("/proc/sys", key.replaceAll(".", "/")), value)
        } catch { /* gone with a module */ }
      }
    }
  }

  // 7. the namespace podman ran in, global directories the run created, the state dir
  if (netnsAlive) sh(["ip", "netns", "delete", state.netns!])
  removeRunDir(dir, extra)
  for (const path of state.createdPaths) {
    if (path === "/var/lib/containers") {
      // podman import writes containers/image's blob-info cache there, whatever storage.conf says
      const cache = join(path, "cache", "blob-info-cache-v1.boltdb")
      if (existsSync(cache)) rmSync(cache, { force: true })
      removeEmptyDir(join(path, "cache"))
    }
  }
  for (const path of [...state.createdPaths].sort((a, b) => b.length - a.length)) removeEmptyDir(path)
  removeEmptyDir(STATE_ROOT)
  return extra
}

/** Cleans every run this process started: the finally path of tests and scripts. */
export const cleanupOwnRuns = (): Array<string> =>
  stateDirs()
    .filter((dir) => loadState(dir)?.pid === process.pid)
    .flatMap((dir) => cleanupRun(dir))

/** Cleans runs whose process is gone (call with the lock held, before preflight). */
export const cleanupStaleRuns = (): Array<string> =>
  stateDirs()
    .filter((dir) => isStale(dir))
    .flatMap((dir) => cleanupRun(dir))

if (import.meta.main) {
  const force = process.argv.includes("--force")
  let cleaned = 0
  for (const dir of stateDirs()) {
    if (!force && !isStale(dir)) {
      console.log(`${dir}: its process still runs (use --force)`)
      continue
    }
    const extra = cleanupRun(dir)
    cleaned++
    console.log(`${dir}: cleaned${extra.length > 0 ? `; removed besides podman's own teardown:\n  ${extra.join("\n  ")}` : ""}`)
  }
  if (cleaned === 0) console.log("nothing to clean")
}
