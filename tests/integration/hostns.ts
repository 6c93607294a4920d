/**
 * Plugins that change "the host" (bridge, portmap, bandwidth…) run here inside a test
 * namespace standing in for the host, via `ip netns exec`: their bridge, host veths,
 * sysctls and nftables rules all land in that namespace, never on the real host.
 */
import { afterAll } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freshNetns, ip, type PluginRun } from "./harness.ts"

export interface TestHost {
  readonly name: string
  readonly path: string
  /** a scratch directory (IPAM dataDir and the like), removed with the host */
  readonly dir: string
  readonly remove: () => void
}

/**
 * Test hosts and pod namespaces for one test file, all removed (newest first) after it, on
 * every path: what each file would otherwise write out again.
 */
export const scratchSpace = () => {
  const cleanups: Array<() => void> = []
  afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))
  return {
    host: (): TestHost => {
      const h = freshHost()
      cleanups.push(h.remove)
      return h
    },
    pod: () => {
      const p = freshNetns()
      cleanups.push(p.remove)
      return p
    }
  }
}

export const freshHost = (): TestHost => {
  const ns = freshNetns()
  ip("-n", ns.name, "link", "set", "lo", "up")
  const dir = mkdtempSync(join(tmpdir(), "tscni-host-"))
  return {
    name: ns.name,
    path: ns.path,
    dir,
    remove: () => {
      ns.remove()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const PATH = process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"

const toRun = (exitCode: number, stdout: string, stderr: string): PluginRun => {
  let json: Record<string, unknown> | undefined
  if (stdout.trim() !== "") json = JSON.parse(stdout) as Record<string, unknown>
  return { exitCode, stdout, stderr, json }
}

const argv = (host: TestHost, binary: ReadonlyArray<string>) => ["ip", "netns", "exec", host.name, ...binary]

/** Runs a plugin binary (or any argv) in the test host, as a runtime would: env + stdin. */
export const execIn = (host: TestHost, binary: string | ReadonlyArray<string>, env: Record<string, string>, stdin: string): PluginRun => {
  const proc = Bun.spawnSync(argv(host, typeof binary === "string" ? [binary] : binary), {
    env: { PATH, ...env },
    stdin: Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe"
  })
  return toRun(proc.exitCode ?? -1, proc.stdout.toString(), proc.stderr.toString())
}

/** The same, without waiting: for parallel ADDs and for killing a plugin mid-way. */
export const spawnIn = (host: TestHost, binary: string | ReadonlyArray<string>, env: Record<string, string>, stdin: string) => {
  const proc = Bun.spawn(argv(host, typeof binary === "string" ? [binary] : binary), {
    env: { PATH, ...env },
    stdin: Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe"
  })
  const done = (async () => {
    const [stdout, stderr, exitCode] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited
    ])
    return toRun(exitCode, stdout, stderr)
  })()
  return { proc, done }
}

/** Bridge port options a plugin sets or could change (not the STP state, ids and timers, which move by themselves). */
const PORT_OPTIONS = [
  "hairpin", "isolated", "learning", "flood", "mcast_flood", "bcast_flood", "proxy_arp", "neigh_suppress",
  "guard", "root_block", "fastleave", "cost", "priority", "locked", "vlan_tunnel"
] as const
/** Bridge options that are configuration (not its ids, timers and topology state). */
const BRIDGE_OPTIONS = ["stp_state", "vlan_filtering", "vlan_protocol", "ageing_time", "forward_delay", "priority", "mcast_snooping", "group_fwd_mask"] as const

const pick = (record: Record<string, unknown> | undefined, keys: ReadonlyArray<string>): Record<string, unknown> | undefined =>
  record === undefined ? undefined : Object.fromEntries(keys.filter((key) => key in record).map((key) => [key, record[key]]))

/** `addr_assign_type` of each link (sysfs; `ip netns exec` mounts the namespace's own /sys): 3 = set by someone. */
const addressAssignTypes = (read: (args: ReadonlyArray<string>) => string): Map<string, string> =>
  new Map(read(["sh", "-c", "grep -H . /sys/class/net/*/addr_assign_type"]).split("\n").flatMap((line) => {
    const match = /^\/sys\/class\/net\/([^/]+)\/addr_assign_type:(\d+)$/.exec(line)
    return match ? [[match[1]!, match[2]!] as const] : []
  }))

/** The tc parents a qdisc can hold filters on: ingress, clsact's two hooks, or a classful qdisc's handle. */
const filterParents = (qdisc: { kind?: string; handle?: string }): ReadonlyArray<ReadonlyArray<string>> => {
  if (qdisc.kind === "ingress") return [["parent", "ffff:"]]
  if (qdisc.kind === "clsact") return [["ingress"], ["egress"]]
  if (qdisc.handle === undefined || qdisc.handle === "0:") return []
  return [["parent", qdisc.handle]]
}

/**
 * What `ip`, `bridge`, `tc` and `nft` see in a namespace: compared before and after to
 * prove "no residue", and that nothing which was there was changed.
 *
 * Links: name, kind, flags, master, alias, MTU, txqlen, MAC, bridge port options and
 * bridge options. The MAC is left out for one case only: a bridge whose MAC nobody set
 * (addr_assign_type ≠ 3). The kernel derives such a bridge's MAC from its ports (the
 * lowest port MAC; 00:00:00:00:00:00 once the last port leaves), so it follows port
 * membership, which the snapshot already holds through `master`, and no plugin could put
 * the old value back without pinning it (which would change the bridge's behaviour). Every
 * other MAC, a bridge's that was set included (then the kernel keeps it), must be restored.
 * Links a failed ADD creates are gone afterwards, so their fresh random MACs never show.
 * addr_assign_type itself is not compared: putting a MAC back (tuning's undo) marks it
 * "set" even though the value is the old one, and nothing can mark it random again.
 */
export const observe = (netns: string): string => {
  const read = (args: ReadonlyArray<string>) => Bun.spawnSync(["ip", "netns", "exec", netns, ...args]).stdout.toString()
  const links = JSON.parse(read(["ip", "-j", "-d", "link", "show"])) as Array<Record<string, unknown>>
  const assignTypes = addressAssignTypes(read)
  // counters, operstate and STP timers change by themselves; what a plugin sets does not
  const linkView = links.map((link) => {
    const info = link.linkinfo as { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string; info_slave_data?: Record<string, unknown> } | undefined
    const assignType = assignTypes.get(String(link.ifname))
    const derivedBridgeMac = info?.info_kind === "bridge" && assignType !== "3"
    return {
      ifname: link.ifname,
      flags: link.flags,
      master: link.master,
      ifalias: link.ifalias,
      kind: info?.info_kind,
      mtu: link.mtu,
      txqlen: link.txqlen,
      mac: derivedBridgeMac ? "derived from its ports" : link.address,
      ...(info?.info_kind === "bridge" ? { bridge: pick(info.info_data, BRIDGE_OPTIONS) } : {}),
      ...(info?.info_slave_kind === "bridge" ? { port: pick(info.info_slave_data, PORT_OPTIONS) } : {})
    }
  })
  // "noqueue 0:" is no qdisc at all: the kernel shows it on a device once it has been up
  // (lo brought up and down again by a failed loopback ADD has it), and nothing can remove it
  const qdiscs = (JSON.parse(read(["tc", "-j", "qdisc", "show"])) as Array<{ dev?: string; kind?: string; handle?: string; parent?: string }>)
    .filter((q) => !(q.kind === "noqueue" && q.handle === "0:"))
  const filters = qdiscs.flatMap((q) =>
    filterParents(q).map((parent) => ({
      dev: q.dev,
      parent: parent.join(" "),
      filters: JSON.parse(read(["tc", "-j", "filter", "show", "dev", String(q.dev), ...parent]) || "[]")
    }))
  )
  return JSON.stringify({
    links: linkView,
    addresses: JSON.parse(read(["ip", "-j", "addr", "show"])).map((a: { ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }) => ({
      ifname: a.ifname,
      addr: a.addr_info.map((i) => `${i.local}/${i.prefixlen}`)
    })),
    routes: JSON.parse(read(["ip", "-j", "route", "show", "table", "all"])),
    qdiscs: qdiscs.map((q) => ({ dev: q.dev, kind: q.kind, handle: q.handle, parent: q.parent })),
    filters,
    vlans: JSON.parse(read(["bridge", "-j", "vlan", "show"]) || "[]"),
    nft: read(["nft", "list", "ruleset"])
  }, null, 1)
}

/**
 * `nft list ruleset` text without tscni's keyed tables that hold no element: a network's
 * tables are created by its first pod and left, empty, by its last (GC removes them), as
 * the shared chains of the reference plugins stay. What "DEL left nothing of the pods"
 * compares; a failed ADD is still compared with observe() itself, and must remove a table
 * it created.
 */
export const withoutEmptyTables = (ruleset: string): string => {
  const kept: Array<string> = []
  let block: Array<string> | undefined
  for (const line of ruleset.split("\n")) {
    if (block === undefined && /^table \S+ tscni-[a-z]+-[0-9a-f]{8}-[0-9a-f]{8} \{/.test(line)) block = []
    if (block === undefined) {
      kept.push(line)
      continue
    }
    block.push(line)
    if (line !== "}") continue
    if (block.some((l) => l.includes("elements = {"))) kept.push(...block)
    block = undefined
  }
  return kept.join("\n")
}

/**
 * iptables-save text without tscni's shared chains that hold no rule, and the jumps into
 * them: like its keyed nftables tables, they are made by a network's first pod and stay.
 */
export const withoutEmptyChains = (save: string): string => {
  const lines = save.split("\n")
  const empty = new Set(
    lines.filter((line) => /^:TSCNI-\S+ /.test(line)).map((line) => line.slice(1).split(" ")[0]!)
      .filter((chain) => !lines.some((line) => line.startsWith(`-A ${chain} `)))
  )
  return lines.filter((line) => {
    const declared = /^:(TSCNI-\S+) /.exec(line)?.[1]
    const target = / -j (TSCNI-\S+)$/.exec(line)?.[1]
    return !(declared !== undefined && empty.has(declared)) && !(target !== undefined && empty.has(target))
  }).join("\n")
}

/**
 * iptables-save and ip6tables-save of a namespace, as they compare: without the timestamp
 * comments and the counters, and without tables that hold nothing but their empty
 * built-in chains (iptables cannot remove a table once something created it);
 * `withoutEmptyChains`: after the last pod's DEL (see withoutEmptyChains).
 */
export const iptablesState = (netns: string, options: { readonly withoutEmptyChains?: boolean } = {}): string =>
  ["iptables-save", "ip6tables-save"].map((tool) => {
    const blocks = Bun.spawnSync(["ip", "netns", "exec", netns, tool]).stdout.toString().split(/^COMMIT$/m)
    return blocks
      .map((block) => options.withoutEmptyChains === true ? withoutEmptyChains(block) : block)
      .map((block) => block.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => line.replace(/ \[\d+:\d+\]$/, "")))
      .filter((lines) => lines.some((line) => !line.startsWith("*") && !/^:[A-Z]+ ACCEPT$/.test(line)))
      .map((lines) => lines.join("\n"))
      .join("\nCOMMIT\n")
  }).join("\n---\n")

/** An nft JSON value in nft's text form: `10.0.0.2`, `10.0.0.0/24`, `veth1 . 0a:58:…`, `80-90`. */
const nftValueText = (value: unknown): string => {
  if (typeof value !== "object" || value === null) return String(value)
  const v = value as Record<string, any>
  if (v.prefix !== undefined) return `${v.prefix.addr}/${v.prefix.len}`
  if (v.concat !== undefined) return (v.concat as Array<unknown>).map(nftValueText).join(" . ")
  if (v.range !== undefined) return (v.range as Array<unknown>).map(nftValueText).join("-")
  return JSON.stringify(value)
}

/**
 * The elements of every set and map of the namespace's nftables tables whose name matches
 * `table`, by set name, as `nft -j` shows them: each key in nft's text form, a map's value,
 * and the element's comment (its owner).
 */
export const nftSets = (netns: string, table: RegExp): Record<string, Array<{ key: string; value?: string; comment: string }>> => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "nft", "-j", "list", "ruleset"]).stdout.toString()
  const sets: Record<string, Array<{ key: string; value?: string; comment: string }>> = {}
  for (const entry of (JSON.parse(out) as { nftables: Array<Record<string, any>> }).nftables) {
    const set = entry.set ?? entry.map
    if (set === undefined || !table.test(String(set.table))) continue
    sets[set.name] = ((set.elem ?? []) as Array<unknown>).map((item) => {
      const [key, value] = Array.isArray(item) ? item : [item, undefined]
      const elem = typeof key === "object" && key !== null && (key as any).elem !== undefined ? (key as any).elem : { val: key }
      return {
        key: nftValueText(elem.val),
        ...(value === undefined ? {} : { value: nftValueText(value) }),
        comment: String(elem.comment ?? "")
      }
    })
  }
  return sets
}

/** observe() of a node after its pods' DEL: the same, but for tscni's tables left empty (see withoutEmptyTables). */
export const observeAfterDel = (netns: string): string => {
  const observed = JSON.parse(observe(netns)) as { nft: string }
  return JSON.stringify({ ...observed, nft: withoutEmptyTables(observed.nft) }, null, 1)
}

/**
 * The host sysctls ADD may turn on: forwarding and bridge-nf (when br_netfilter is
 * loaded) for bridge, route_localnet of each interface for portmap. Not part of observe():
 * DEL leaves them on on purpose, as the reference plugins do (other pods may need them),
 * but a failed ADD must put back what it found.
 */
export const hostSysctls = (netns: string): string =>
  Bun.spawnSync(["ip", "netns", "exec", netns, "sh", "-c",
    "grep -H . /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/bridge/bridge-nf-call-ip*tables /proc/sys/net/ipv4/conf/*/route_localnet 2>/dev/null"
  ]).stdout.toString()

/** Sets sysctls from a hostSysctls() listing again (after a DEL that left them, before the next run). */
export const restoreHostSysctls = (netns: string, listing: string): void => {
  for (const line of listing.split("\n").filter((l) => l !== "")) {
    const [file, value] = line.split(":")
    Bun.spawnSync(["ip", "netns", "exec", netns, "sh", "-c", `echo ${value} > ${file}`])
  }
}

/**
 * Waits (≤ 5 s) until the namespaces settle after an ADD: no IPv6 address tentative any
 * more (DAD finishing adds a link-local address's local route by itself) and two looks
 * 100 ms apart the same (carrier coming up changes flags by itself). For a "before"
 * snapshot that later snapshots can equal.
 */
export const settle = (...namespaces: ReadonlyArray<string>): void => {
  let last = ""
  for (let i = 0; i < 50; i++) {
    const tentative = namespaces.some((ns) =>
      Bun.spawnSync(["ip", "-j", "-n", ns, "addr", "show"]).stdout.toString().includes('"tentative"'))
    const now = namespaces.map((ns) => observe(ns)).join("\n")
    if (!tentative && now === last) return
    last = now
    Bun.sleepSync(100)
  }
}
