import { answerVersionFast } from "@tscni/skel/version"
import { pluginNamed, PLUGIN_NAMES } from "./plugins.ts"

/**
 * One runtime for every plugin: installed once as `tscni` with a link per plugin
 * (`ln -s tscni loopback`), it runs the plugin named by the name it was invoked by.
 * `tscni <plugin>` works too. Nothing heavy is imported at the top: VERSION must stay fast.
 */
const invokedAs = process.argv0.slice(process.argv0.lastIndexOf("/") + 1)
const run = pluginNamed(invokedAs) ?? pluginNamed(process.argv[2] ?? "")

const refuse = async (): Promise<void> => {
  const { errorResult, invalidEnvironment } = await import("@tscni/spec/errors")
  const { LATEST_VERSION } = await import("@tscni/spec/versions")
  const error = invalidEnvironment("argv[0]", `'${invokedAs}' is not a tscni plugin (one of: ${PLUGIN_NAMES.join(", ")})`)
  process.exitCode = 1
  await Bun.write(Bun.stdout, JSON.stringify(errorResult(error, LATEST_VERSION)) + "\n")
}

if (run === undefined) void refuse()
else if (!answerVersionFast()) void run()
