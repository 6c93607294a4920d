import { forwardToDaemon } from "@tscni/resident/forward"
import { answerVersionFast } from "@tscni/skel/version"
import { type PluginEntry, pluginNamed, PLUGIN_NAMES } from "./plugins.ts"

/**
 * One runtime for every plugin: installed once as `tscni` with a link per plugin
 * (`ln -s tscni loopback`), it runs the plugin named by the name it was invoked by.
 * `tscni <plugin>` works too, and `tscni agent` (formerly `tscni daemon`) is the node's
 * resident tscni that serves these calls warm when it runs (@tscni/resident). Nothing heavy is imported at the top: VERSION
 * and forwarding must stay as cheap as a bare Bun program.
 */
const invokedAs = process.argv0.slice(process.argv0.lastIndexOf("/") + 1)
const pluginName = pluginNamed(invokedAs) !== undefined ? invokedAs : process.argv[2] ?? ""
const load = pluginNamed(pluginName)

const usage = (): string => `usage: tscni agent [--help]     the node's resident tscni (serves plugin calls warm, probes, metrics)
       tscni PLUGIN               run a plugin as a runtime would (CNI_COMMAND etc. in the environment)
       PLUGIN                     the same, through a link named after the plugin (ln -s tscni bridge)

plugins: ${PLUGIN_NAMES.join(", ")}
`

const refuse = async (): Promise<void> => {
  const { errorResult, invalidEnvironment } = await import("@tscni/spec/errors")
  const { LATEST_VERSION } = await import("@tscni/spec/versions")
  const error = invalidEnvironment("argv[0]", `'${invokedAs}' is not a tscni plugin (one of: ${PLUGIN_NAMES.join(", ")})`)
  process.exitCode = 1
  await Bun.write(Bun.stdout, JSON.stringify(errorResult(error, LATEST_VERSION)) + "\n")
}

/** `tscni agent …` (and its older name `tscni daemon`): the node's resident tscni. */
const agent = async (): Promise<void> => {
  const { runAgent } = await import("@tscni/resident/agent")
  const bound = (name: string) => pluginNamed(name)?.().then((entry) => entry.bound) ?? Promise.resolve(undefined)
  await runAgent(process.argv.slice(3), bound).catch((error: unknown) => {
    process.stderr.write(`tscni agent: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exitCode = 1
  })
  // the agent has stopped: a datastore client's sockets and timers must not keep the process up
  process.exit()
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
} else if (process.argv[2] === "agent" || process.argv[2] === "daemon") void agent()
else if (["--help", "-h", "help"].includes(process.argv[2] ?? "") && invokedAs === "tscni") void Bun.write(Bun.stdout, usage())
else void refuse()
