import { createHash } from "node:crypto"
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative, resolve } from "node:path"
import { Effect, Exit, Layer } from "effect"
import { PluginExec } from "@tscni/steps/PluginExec"
import { HostFs } from "../src/HostFs.ts"
import { type ReportLine, Reporter } from "../src/Reporter.ts"

export const REPO = resolve(import.meta.dir, "../../..")
export const MAIN = resolve(import.meta.dir, "../src/main.ts")
export const DIST_BIN = join(REPO, "dist/bin")
export const TEMPLATE = join(REPO, "deploy/10-tscni.conflist.template")

/** A fresh temp dir, removed by `cleanup`. */
export const tempDir = (prefix = "tscni-install-"): string => mkdtempSync(join(tmpdir(), prefix))

export const cleanup = (...dirs: ReadonlyArray<string>): void => {
  for (const dir of dirs) {
    // a test may have made a dir read-only
    if (existsSync(dir)) chmodSync(dir, 0o755)
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Everything under `root`, one line per entry (hidden ones too): path, type, mode and the
 * sha256 of a file's bytes or a symlink's target. Equal snapshots mean byte-for-byte
 * equal trees; a missing root is its own snapshot.
 */
export const snapshot = (root: string): ReadonlyArray<string> => {
  if (!existsSync(root) && !isSymlink(root)) return [`${root} missing`]
  const lines: Array<string> = []
  const walk = (path: string): void => {
    const stats = lstatSync(path)
    const name = relative(root, path) || "."
    const mode = (stats.mode & 0o7777).toString(8)
    if (stats.isSymbolicLink()) lines.push(`${name} symlink ${mode} -> ${readlinkSync(path)}`)
    else if (stats.isFile()) {
      lines.push(`${name} file ${mode} ${createHash("sha256").update(readFileSync(path)).digest("hex")}`)
    } else if (stats.isDirectory()) {
      lines.push(`${name} dir ${mode}`)
      for (const entry of readdirSync(path).sort()) walk(join(path, entry))
    } else lines.push(`${name} other ${mode}`)
  }
  walk(root)
  return lines
}

const isSymlink = (path: string): boolean => {
  try {
    return lstatSync(path).isSymbolicLink()
  } catch {
    return false
  }
}

export const VERSION_ANSWER = `{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}`

/** How a fake plugin answers CNI_COMMAND=VERSION (`slow`: after 3 s). */
export type FakeBehaviour = "good" | "fails" | "old" | "garbage" | "slow"

const versionBody: Record<FakeBehaviour, string> = {
  good: `cat >/dev/null; printf '%s' '${VERSION_ANSWER}'; exit 0`,
  fails: `cat >/dev/null; printf '%s' '{"cniVersion":"1.1.0","code":999,"msg":"broken build"}'; exit 1`,
  old: `cat >/dev/null; printf '%s' '{"cniVersion":"0.3.1","supportedVersions":["0.3.0","0.3.1"]}'; exit 0`,
  garbage: `cat >/dev/null; echo 'hello there'; exit 0`,
  slow: `sleep 3; printf '%s' '${VERSION_ANSWER}'; exit 0`
}

/** A shell script that answers VERSION like a plugin would (or fails to); `tag` changes its bytes. */
export const fakePlugin = (path: string, behaviour: FakeBehaviour = "good", options: { mode?: number; tag?: string } = {}): void => {
  writeFileSync(path, [
    "#!/bin/sh",
    `# fake plugin ${options.tag ?? ""}`,
    `if [ "$CNI_COMMAND" = VERSION ]; then ${versionBody[behaviour]}; fi`,
    "exit 1",
    ""
  ].join("\n"))
  chmodSync(path, options.mode ?? 0o755)
}

/**
 * A shell script acting as the multicall binary: under a plugin's name it answers VERSION
 * (except under the names in `failing`); under its own name it refuses, listing the
 * plugins, as dist/bin/tscni does.
 */
export const fakeMulticall = (
  path: string,
  plugins: ReadonlyArray<string>,
  options: { failing?: ReadonlyArray<string>; tag?: string } = {}
): void => {
  const known = plugins.join(" ")
  const failing = (options.failing ?? []).join(" ")
  writeFileSync(path, [
    "#!/bin/sh",
    `# fake multicall ${options.tag ?? ""}`,
    `name=$(basename "$0")`,
    `for f in ${failing}; do if [ "$name" = "$f" ]; then echo '{"code":999,"msg":"broken"}'; exit 1; fi; done`,
    `for p in ${known}; do`,
    `  if [ "$name" = "$p" ]; then`,
    `    if [ "$CNI_COMMAND" = VERSION ]; then cat >/dev/null; printf '%s' '${VERSION_ANSWER}'; exit 0; fi`,
    `    exit 1`,
    `  fi`,
    `done`,
    `printf '%s\\n' '{"cniVersion":"1.1.0","code":4,"msg":"argv[0]: tscni is not a tscni plugin (one of: ${plugins.join(", ")})"}'`,
    "exit 1",
    ""
  ].join("\n"))
  chmodSync(path, 0o755)
}

/** Writes a file with a mode, making its dir. */
export const put = (path: string, text: string, mode = 0o644): void => {
  mkdirSync(join(path, ".."), { recursive: true })
  writeFileSync(path, text)
  chmodSync(path, mode)
}

export interface CliRun {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the installer as a process (`bun src/main.ts …`), as a node would. */
export const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}): CliRun => {
  const run = Bun.spawnSync([process.execPath, MAIN, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdout: "pipe",
    stderr: "pipe"
  })
  return { exitCode: run.exitCode, stdout: run.stdout.toString(), stderr: run.stderr.toString() }
}

/** Runs an installer effect in this process with the real processes and the given HostFs. */
export const runIn = async <A, E>(
  effect: Effect.Effect<A, E, HostFs | PluginExec | Reporter>,
  fsLayer: Layer.Layer<HostFs> = HostFs.layer
): Promise<{ readonly exit: Exit.Exit<A, E>; readonly lines: ReadonlyArray<ReportLine> }> => {
  const lines: Array<ReportLine> = []
  const exit = await Effect.runPromiseExit(
    Effect.provide(effect, Layer.mergeAll(fsLayer, PluginExec.layer, Reporter.collect(lines)))
  )
  return { exit, lines }
}
