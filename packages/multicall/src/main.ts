import { forwardToDaemon } from "@tscni/resident/forward"
import { answerVersionFast } from "@tscni/skel/version"
import { type PluginEntry, pluginNamed, PLUGIN_NAMES } from "./plugins.ts"

/**
 * One runtime for every plugin: installed once as `tscni` with a link per plugin
 * (`ln -s tscni loopback`), it runs the plugin named by the name it was invoked by.
 * `tscni <plugin>` works too, and `tscni daemon` is the resident tscni that serves these
 * calls warm when it runs (@tscni/resident). Nothing heavy is imported at the top: VERSION
 * and forwarding must stay as cheap as a bare Bun program.
 */
const invokedAs = process.argv0.slice(process.argv0.lastIndexOf("/") + 1)
const pluginName = pluginNamed(invokedAs) !== undefined ? invokedAs : process.argv[2] ?? ""
const load = pluginNamed(pluginName)

const refuse = async (): Promise<void> => {
  const { errorResult, invalidEnvironment } = await import("@tscni/spec/errors")
  const { LATEST_VERSION } = await import("@tscni/spec/versions")
  const error = invalidEnvironment("argv[0]", `'${invokedAs}' is not a tscni plugin (one of: ${PLUGIN_NAMES.join(", ")})`)
  process.exitCode = 1
  await Bun.write(Bun.stdout, JSON.stringify(errorResult(error, LATEST_VERSION)) + "\n")
}

/** `tscni daemon [--socket PATH]`. */
const daemon = async (): Promise<void> => {
  const { runDaemon } = await import("@tscni/resident/daemon")
  const bound = (name: string) => pluginNamed(name)?.().then((entry) => entry.bound) ?? Promise.resolve(undefined)
  await runDaemon(process.argv.slice(3), bound).catch((error: unknown) => {
    process.stderr.write(`tscni daemon: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exitCode = 1
  })
}

/**
 * The call, by the daemon when one serves it, else here (with the stdin already read). A
 * call without CNI_COMMAND is not one to forward: the plugin answers it with its error at
 * once, without waiting for stdin.
 */
const serveCall = async (entry: () => Promise<PluginEntry>): Promise<void> => {
  if ((process.env.CNI_COMMAND ?? "") === "") return (await entry()).run()
  const stdin = await Bun.stdin.text().catch(() => undefined)
  const forwarded = stdin === undefined ? undefined : await forwardToDaemon(pluginName, stdin)
  if (forwarded === undefined) return (await entry()).run(stdin)
  if (forwarded.stderr !== "") await Bun.write(Bun.stderr, forwarded.stderr)
  if (forwarded.stdout !== "") await Bun.write(Bun.stdout, forwarded.stdout)
  process.exit(forwarded.exitCode)
}

if (load !== undefined) {
  if (!answerVersionFast()) void serveCall(load)
} else if (process.argv[2] === "daemon") void daemon()
else void refuse()
