/**
 * Plugins that change "the host" (bridge, portmap, bandwidth…) run here inside a test
 * namespace standing in for the host, via `ip netns exec`: their bridge, host veths,
 * sysctls and nftables rules all land in that namespace, never on the real host.
 */
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

/** What `ip`, and `nft` see in a namespace: compared before and after to prove "no residue". */
export const observe = (netns: string): string => {
  const read = (args: ReadonlyArray<string>) => Bun.spawnSync(["ip", "netns", "exec", netns, ...args]).stdout.toString()
  const links = JSON.parse(read(["ip", "-j", "-d", "link", "show"])) as Array<Record<string, unknown>>
  // counters and the like change by themselves; names, kinds, flags, masters and aliases do not
  const linkView = links.map((link) => ({
    ifname: link.ifname,
    flags: link.flags,
    master: link.master,
    ifalias: link.ifalias,
    kind: (link.linkinfo as { info_kind?: string } | undefined)?.info_kind
  }))
  return JSON.stringify({
    links: linkView,
    addresses: JSON.parse(read(["ip", "-j", "addr", "show"])).map((a: { ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }) => ({
      ifname: a.ifname,
      addr: a.addr_info.map((i) => `${i.local}/${i.prefixlen}`)
    })),
    routes: JSON.parse(read(["ip", "-j", "route", "show", "table", "all"])),
    qdiscs: JSON.parse(read(["tc", "-j", "qdisc", "show"])).map((q: Record<string, unknown>) => ({ dev: q.dev, kind: q.kind, handle: q.handle, parent: q.parent })),
    nft: read(["nft", "list", "ruleset"])
  }, null, 1)
}
