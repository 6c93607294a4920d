/**
 * The bench's namespaces and scratch space, removed on every path: normal end, thrown
 * error, SIGINT, SIGTERM, SIGHUP; and, at the next start, those of a run that was
 * SIGKILLed. Every namespace is named tscni-bench-<pid>-<tag>. Also runs one phase of
 * inner.ts inside a fresh namespace standing in for the host.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { containerId, type Plan, type Pod, type Variant } from "./lib.ts"

const PREFIX = `tscni-bench-${process.pid}-`
const namespaces = new Set<string>()
const children = new Set<number>()
let scratch: string | undefined

export const sh = (argv: ReadonlyArray<string>, env?: Record<string, string>) => {
  const proc = Bun.spawnSync([...argv], { stdout: "pipe", stderr: "pipe", ...(env ? { env } : {}) })
  return { exitCode: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() }
}

export const deleteNetns = (name: string) => {
  sh(["ip", "netns", "delete", name])
  namespaces.delete(name)
}

export const createNetns = (tag: string): string => {
  const name = `${PREFIX}${tag}`
  namespaces.add(name)
  const out = sh(["ip", "netns", "add", name])
  if (out.exitCode !== 0) throw new Error(`ip netns add ${name}: ${out.stderr}`)
  return name
}

/** Kills the inner process (the only one the bench leaves running), removes namespaces and scratch. */
export const cleanup = () => {
  for (const pid of children) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  children.clear()
  for (const name of [...namespaces]) deleteNetns(name)
  // a namespace whose creation was interrupted half-way still has its file
  if (existsSync("/run/netns")) {
    for (const name of readdirSync("/run/netns")) if (name.startsWith(PREFIX)) deleteNetns(name)
  }
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true })
  scratch = undefined
}

/** Installs the cleanup hooks, removes stale namespaces and makes the scratch dir (returned). */
export const setUp = (log: (message: string) => void): string => {
  if (process.getuid?.() !== 0) {
    console.error("bench: run as root (it creates network namespaces): sudo bun run bench")
    process.exit(1)
  }
  process.once("exit", cleanup)
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      console.error(`bench: ${signal}, removing the bench namespaces`)
      cleanup()
      process.exit(130)
    })
  }
  if (existsSync("/run/netns")) {
    for (const name of readdirSync("/run/netns")) {
      const pid = Number(/^tscni-bench-(\d+)-/.exec(name)?.[1] ?? Number.NaN)
      if (!Number.isInteger(pid) || pid === process.pid) continue
      let alive = true
      try {
        process.kill(pid, 0)
      } catch {
        alive = false
      }
      if (!alive) {
        sh(["ip", "netns", "delete", name])
        log(`removed stale namespace ${name}`)
      }
    }
  }
  scratch = mkdtempSync(join(tmpdir(), "tscni-bench-"))
  chmodSync(scratch, 0o755)
  return scratch
}

/**
 * One phase of inner.ts inside a fresh host namespace: pods are created first, outside
 * any timing; the host and the pods are removed afterwards, whatever happened.
 */
export const runInHost = async <A>(
  base: Omit<Plan, "phase" | "variants" | "pods">,
  phase: Plan["phase"],
  variants: ReadonlyArray<Variant>,
  podGroups: Record<string, number>,
  extra: Partial<Plan> = {}
): Promise<A> => {
  const work = base.scratch
  const host = createNetns(`${phase}-host`)
  const pods: Record<string, Array<Pod>> = {}
  try {
    sh(["ip", "-n", host, "link", "set", "lo", "up"])
    for (const [group, count] of Object.entries(podGroups)) {
      pods[group] = Array.from({ length: count }, (_, index) => {
        const name = createNetns(`${phase}-${group}-${index}`)
        return { id: containerId(), netns: `/var/run/netns/${name}`, index }
      })
    }
    const plan: Plan = { ...base, phase, variants, pods, ...extra }
    const planPath = join(work, `${phase}-plan.json`)
    const outPath = join(work, `${phase}-out.json`)
    writeFileSync(planPath, JSON.stringify(plan))
    const inner = Bun.spawn(["ip", "netns", "exec", host, process.execPath, join(import.meta.dir, "inner.ts"), planPath, outPath], {
      stdout: "inherit",
      stderr: "inherit"
    })
    children.add(inner.pid)
    const exitCode = await inner.exited
    children.delete(inner.pid)
    if (exitCode !== 0) throw new Error(`the ${phase} phase failed (exit ${exitCode})`)
    return JSON.parse(readFileSync(outPath, "utf8")) as A
  } finally {
    for (const group of Object.values(pods)) for (const pod of group) deleteNetns(pod.netns.slice("/var/run/netns/".length))
    deleteNetns(host)
  }
}
