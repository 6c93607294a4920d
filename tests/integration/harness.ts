/**
 * Integration harness: runs the compiled plugin binaries the way a runtime does (env +
 * stdin, stdout parsed as JSON) in network namespaces the test creates, and observes the
 * result with iproute2 (`ip -j`), never with tscni's own code.
 */
import type { Subprocess } from "bun"
import { expect } from "bun:test"
import { existsSync, readFileSync } from "node:fs"
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

/** A process's state letter in /proc/<pid>/stat (`T`: stopped by a signal) and its command name; undefined once it is gone. */
export const processState = (pid: number): { readonly state: string; readonly comm: string } | undefined => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  // the command name is in parentheses and may hold spaces or parentheses itself: the state follows the last ")"
  const close = stat.lastIndexOf(")")
  return { comm: stat.slice(stat.indexOf("(") + 1, close), state: stat.slice(close + 2, close + 3) }
}

/** A spawned invocation (hostns.ts `spawnIn`): the process, and its output once it is over. */
export interface RunningPlugin {
  readonly proc: Pick<Subprocess, "pid" | "exitCode" | "signalCode" | "kill">
  readonly done: Promise<PluginRun>
}

/**
 * Waits until `running` has stopped itself (fault-driver.ts in pause or hold mode sends
 * itself SIGSTOP right before Backend call k), or ended. Waiting is for a state, with a
 * generous deadline, never for a time. Returns whether it was seen stopped, and under which
 * command name (`bun`: the driver itself; `ip netns exec` execs it, so the pid spawned is
 * its own).
 */
export const waitUntilStopped = async (
  running: RunningPlugin,
  deadlineMs = 60_000
): Promise<{ readonly stopped: boolean; readonly comm: string | undefined }> => {
  const { proc } = running
  const deadline = Date.now() + deadlineMs
  let seen: ReturnType<typeof processState>
  // paced polling of a condition: the pause itself is what makes the moment happen
  while (proc.exitCode === null && proc.signalCode === null && Date.now() < deadline) {
    seen = processState(proc.pid)
    if (seen?.state === "T") break
    await Bun.sleep(2)
  }
  return { stopped: seen?.state === "T", comm: seen?.comm }
}

/**
 * Waits until `running` has stopped itself (see waitUntilStopped), then SIGKILLs it: the
 * kill lands where the process stopped. The process is SIGKILLed on every path (it ended,
 * or did not stop in time), so none is left. Returns whether it was seen stopped, under
 * which command name, how it ended, and its output.
 */
export const killWhenStopped = async (
  running: RunningPlugin,
  deadlineMs = 60_000
): Promise<{ readonly stopped: boolean; readonly comm: string | undefined; readonly signal: string | null; readonly run: PluginRun }> => {
  const { proc } = running
  let seen: { readonly stopped: boolean; readonly comm: string | undefined } = { stopped: false, comm: undefined }
  try {
    seen = await waitUntilStopped(running, deadlineMs)
  } finally {
    proc.kill("SIGKILL")
  }
  const run = await running.done
  return { ...seen, signal: proc.signalCode === null ? null : String(proc.signalCode), run }
}

/** Runs the checks of one kill point; a failure names the kill point (a diff of a large view may not show `k`). */
const atKillPoint = (where: string, check: () => void): void => {
  try {
    check()
  } catch (error) {
    if (error instanceof Error) error.message = `${where}:\n${error.message}`
    throw error
  }
}

/**
 * SIGKILL at every Backend call of one ADD, each followed by DEL: `kernelFaultSweep` with a
 * kill instead of a fault. `add(k)` spawns the ADD through fault-driver.ts in pause mode,
 * stopping itself right before Backend call k, for k = 1, 2, … until a run makes fewer than
 * k calls: the whole ADD, which must be reached and succeed; it is undone with `del(0)` and
 * checked with `verify(0)`. (The count is not taken from a first whole run: how many calls
 * an ADD makes depends on what the node already has, e.g. a network's keyed nftables table,
 * made by its first ADD and left by its last DEL.) Every other run must have stopped itself
 * at call k (its last stderr line is `paused=<k> op=…`; seen in state `T` as `bun`) and been
 * ended by the SIGKILL; `leftSomething(k)`, looked at right after the kill, says whether the
 * dead ADD left DEL anything to undo; then `del(k)` (the compiled plugin's DEL, asserting
 * its own exit code) and `verify(k)` (host, pod and state as before). Returns the operation
 * each k stopped at (one per kill point) and the k's that left something.
 *
 * Killing the driver is killing the plugin: it runs the same plugin code on the same
 * LinuxBackend as the compiled binary, in-process, with delegated IPAM as real processes.
 */
export const kernelKillSweep = async (
  add: (k: number) => RunningPlugin,
  del: (k: number) => void,
  verify: (k: number) => void,
  leftSomething: (k: number) => boolean,
  options: { readonly limit?: number } = {}
): Promise<{ readonly ops: ReadonlyArray<string>; readonly left: ReadonlyArray<number> }> => {
  const ops: Array<string> = []
  const left: Array<number> = []
  for (let k = 1; k <= (options.limit ?? 300); k++) {
    const { stopped, comm, signal, run } = await killWhenStopped(add(k))
    const calls = Number(/^calls=(\d+)$/m.exec(run.stderr)?.[1] ?? -1)
    if (!stopped && signal === null && calls >= 0 && calls < k) {
      // the whole ADD (it never reached call k): it must have succeeded, and DEL undo it
      expect({ k, exitCode: run.exitCode, stdout: run.exitCode === 0 ? "" : run.stdout }).toEqual({ k, exitCode: 0, stdout: "" })
      atKillPoint("the whole ADD, then DEL", () => {
        del(0)
        verify(0)
      })
      return { ops, left }
    }
    const lastLine = run.stderr.trimEnd().split("\n").at(-1) ?? ""
    expect({ k, stopped, comm, signal, lastLine }).toEqual({ k, stopped: true, comm: "bun", signal: "SIGKILL", lastLine: expect.stringMatching(new RegExp(`^paused=${k} op=\\w+$`)) })
    const op = lastLine.split("op=")[1]!
    ops.push(op)
    if (leftSomething(k)) left.push(k)
    atKillPoint(`SIGKILL right before Backend call ${k} of ADD (${op}), then DEL`, () => {
      del(k)
      verify(k)
    })
  }
  throw new Error(`the kill sweep made ${options.limit ?? 300} runs without reaching the end of ADD`)
}
