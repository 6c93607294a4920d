/**
 * Fake plugin binaries for chain tests: small shell scripts that append one JSON line per
 * invocation (CNI_* env + stdin) to a log and answer as configured.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { PluginExec } from "@tscni/steps"
import { Progress } from "../src/invoke.ts"

export interface FakeOptions {
  /** printed on ADD (default: a result naming the plugin's interface) */
  readonly result?: unknown
  /** answered to VERSION */
  readonly versions?: ReadonlyArray<string>
  /** the verb that fails with `error` */
  readonly failOn?: string
  readonly error?: { readonly code: number; readonly msg: string; readonly details?: string }
  /** exit without printing anything on this verb */
  readonly crashOn?: string
}

/** One logged invocation. */
export interface Logged {
  readonly plugin: string
  readonly command: string
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  readonly args: string
  readonly path: string
  readonly stdin: Record<string, unknown>
}

export interface Sandbox {
  readonly root: string
  readonly confDir: string
  readonly binDir: string
  readonly cacheDir: string
  readonly plugin: (name: string, options?: FakeOptions) => void
  readonly conf: (file: string, json: unknown) => void
  readonly log: () => ReadonlyArray<Logged>
  readonly clearLog: () => void
  readonly remove: () => void
}

const heredoc = (json: unknown) => `cat <<'JSON_EOF'\n${JSON.stringify(json)}\nJSON_EOF`

export const makeSandbox = (): Sandbox => {
  const root = mkdtempSync(join(tmpdir(), "tscni-cni-test-"))
  const confDir = join(root, "net.d")
  const binDir = join(root, "bin")
  const cacheDir = join(root, "results")
  mkdirSync(confDir)
  mkdirSync(binDir)
  const logFile = join(root, "calls.log")
  return {
    root,
    confDir,
    binDir,
    cacheDir,
    plugin: (name, options = {}) => {
      const result = options.result ?? { cniVersion: "1.1.0", interfaces: [{ name: `${name}0` }], ips: [{ address: "10.1.0.2/24", interface: 0 }] }
      const versions = options.versions ?? ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
      const script = [
        "#!/bin/sh",
        "stdin=$(cat)",
        `[ -z "$stdin" ] && stdin='{}'`,
        `printf '%s\\n' "{\\"plugin\\":\\"${name}\\",\\"command\\":\\"$CNI_COMMAND\\",\\"containerId\\":\\"$CNI_CONTAINERID\\",\\"netns\\":\\"$CNI_NETNS\\",\\"ifname\\":\\"$CNI_IFNAME\\",\\"args\\":\\"$CNI_ARGS\\",\\"path\\":\\"$CNI_PATH\\",\\"stdin\\":$stdin}" >> ${logFile}`,
        ...(options.crashOn ? [`[ "$CNI_COMMAND" = "${options.crashOn}" ] && { echo "boom" >&2; exit 3; }`] : []),
        ...(options.failOn
          ? [`if [ "$CNI_COMMAND" = "${options.failOn}" ]; then`, heredoc({ cniVersion: "1.1.0", ...options.error }), "exit 1", "fi"]
          : []),
        `if [ "$CNI_COMMAND" = VERSION ]; then`,
        heredoc({ cniVersion: "1.1.0", supportedVersions: versions }),
        "exit 0",
        "fi",
        `if [ "$CNI_COMMAND" = ADD ]; then`,
        heredoc(result),
        "fi",
        "exit 0"
      ].join("\n")
      const path = join(binDir, name)
      writeFileSync(path, script + "\n")
      chmodSync(path, 0o755)
    },
    conf: (file, json) => writeFileSync(join(confDir, file), typeof json === "string" ? json : JSON.stringify(json, null, 1)),
    log: () =>
      existsSync(logFile)
        ? readFileSync(logFile, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Logged)
        : [],
    clearLog: () => rmSync(logFile, { force: true }),
    remove: () => rmSync(root, { recursive: true, force: true })
  }
}

/** Runs an effect with real plugin processes and collected progress lines. */
export const run = <A, E>(
  effect: Effect.Effect<A, E, PluginExec | Progress>,
  lines: Array<string> = []
): Promise<A> => Effect.runPromise(effect.pipe(Effect.provide(Layer.mergeAll(PluginExec.layer, Progress.collect(lines)))))

/** The same, returning the failure instead of rejecting. */
export const runFail = <A, E>(
  effect: Effect.Effect<A, E, PluginExec | Progress>,
  lines: Array<string> = []
): Promise<E> =>
  Effect.runPromise(
    effect.pipe(
      Effect.flip,
      Effect.provide(Layer.mergeAll(PluginExec.layer, Progress.collect(lines)))
    )
  )
