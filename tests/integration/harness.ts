/**
 * Integration harness: runs the compiled plugin binaries the way a runtime does (env +
 * stdin, stdout parsed as JSON) in network namespaces the test creates, and observes the
 * result with iproute2 (`ip -j`), never with tscni's own code.
 */
import { expect } from "bun:test"
import { existsSync } from "node:fs"
import { resolve } from "node:path"

export const BIN_DIR = resolve(import.meta.dir, "..", "..", "dist", "bin")

export const binary = (name: string): string => {
  const path = resolve(BIN_DIR, name)
  if (!existsSync(path)) throw new Error(`${path} is missing: run 'bun run build' first`)
  return path
}

if (process.getuid?.() !== 0) throw new Error("integration tests need root (they create network namespaces)")

const created = new Set<string>()

const run = (argv: ReadonlyArray<string>): { stdout: string; stderr: string; exitCode: number } => {
  const proc = Bun.spawnSync([...argv], { stdout: "pipe", stderr: "pipe" })
  return { stdout: proc.stdout.toString(), stderr: proc.stderr.toString(), exitCode: proc.exitCode ?? -1 }
}

/** `ip` with arguments; throws when it fails. */
export const ip = (...args: ReadonlyArray<string>): string => {
  const out = run(["ip", ...args])
  if (out.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${out.stderr}`)
  return out.stdout
}

/** `ip -j -n NS …` parsed. */
export const ipJson = <T = Array<Record<string, unknown>>>(netns: string, ...args: ReadonlyArray<string>): T =>
  JSON.parse(ip("-j", "-n", netns, ...args)) as T

const deleteNetns = (name: string): void => {
  run(["ip", "netns", "delete", name])
  created.delete(name)
}

/**
 * Removes every namespace a test made and did not remove. Registered for the whole run by
 * tests/preload.ts (a file-level afterAll here would only cover the first test file that
 * imports this module), and on exit and interrupt.
 */
export const cleanupAll = (): void => {
  for (const name of [...created]) deleteNetns(name)
}
process.once("exit", cleanupAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    cleanupAll()
    process.exit(130)
  })
}

/** A fresh, uniquely named namespace, removed after the test file on every path. */
export const freshNetns = (): { name: string; path: string; remove: () => void } => {
  const name = `tscni-it-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  ip("netns", "add", name)
  created.add(name)
  return { name, path: `/var/run/netns/${name}`, remove: () => deleteNetns(name) }
}

/** The CNI_* environment of one attachment, as a runtime passes it (interface eth0). */
export const podEnv = (command: string, containerId: string, netns: string, cniPath = BIN_DIR): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: containerId,
  CNI_NETNS: netns,
  CNI_IFNAME: "eth0",
  CNI_PATH: cniPath
})

export interface PluginRun {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
  /** stdout parsed, when it is JSON */
  readonly json: Record<string, unknown> | undefined
}

/** Executes a plugin binary (or any argv, e.g. fault-driver.ts under bun) as a runtime would. */
export const execPlugin = (
  path: string | ReadonlyArray<string>,
  env: Record<string, string>,
  stdin: string
): PluginRun => {
  const proc = Bun.spawnSync(typeof path === "string" ? [path] : [...path], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdin: Buffer.from(stdin), stdout: "pipe", stderr: "pipe" })
  const stdout = proc.stdout.toString()
  let json: Record<string, unknown> | undefined
  if (stdout.trim() !== "") json = JSON.parse(stdout) as Record<string, unknown>
  return { exitCode: proc.exitCode ?? -1, stdout, stderr: proc.stderr.toString(), json }
}

/**
 * Sweeps a fault over every Backend call of one ADD: `add(k)` runs it through
 * fault-driver.ts with the k-th call failing, for k = 1, 2, … until a run makes fewer
 * than k calls (the clean run, which must be reached). A failed run must have failed at
 * the injected fault (not before it, nor from a driver that did not start), and then
 * `verify(k)` checks what it left. A run that succeeded although its fault fired must be
 * one of `tolerated` (the k's of faults ADD may survive; none unless given), and is
 * undone with `del`, as the clean run is. Returns how many runs failed.
 */
export const kernelFaultSweep = (
  add: (k: number) => PluginRun,
  del: (run: PluginRun) => void,
  verify: (k: number) => void,
  options: { readonly tolerated?: ReadonlyArray<number>; readonly limit?: number } = {}
): number => {
  let faults = 0
  const tolerated: Array<number> = []
  for (let k = 1; k <= (options.limit ?? 300); k++) {
    const run = add(k)
    const calls = Number(/calls=(\d+)/.exec(run.stderr)?.[1] ?? -1)
    if (run.exitCode === 0) {
      del(run)
      if (calls >= k) {
        tolerated.push(k)
        continue
      }
      expect({ tolerated }).toEqual({ tolerated: [...(options.tolerated ?? [])] })
      return faults
    }
    faults++
    expect({ k, calls: calls >= k, stdout: run.stdout }).toEqual({ k, calls: true, stdout: expect.stringContaining(`injected fault at call ${k}`) })
    verify(k)
  }
  throw new Error(`the fault sweep made ${options.limit ?? 300} runs without reaching one its fault did not stop`)
}
