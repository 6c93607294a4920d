/**
 * The command line: options in, a Command out (paths made absolute, since the record
 * must name them wherever `--uninstall` runs). argv and env are arguments, so tests parse
 * without a process.
 */
import { resolve } from "node:path"
import type { InstallOptions } from "./plan.ts"

/** What to run. */
export type Command =
  | { readonly kind: "help" }
  | { readonly kind: "install"; readonly options: InstallOptions }
  | { readonly kind: "uninstall"; readonly binDir: string; readonly dryRun: boolean }
  | { readonly kind: "usage"; readonly message: string }

/** Where container runtimes look for CNI plugins unless configured otherwise. */
export const DEFAULT_BIN_DIR = "/opt/cni/bin"
/** Where container runtimes read network configuration (conflists) from by default. */
export const DEFAULT_CONF_DIR = "/etc/cni/net.d"

/** The text `--help` prints; the options it lists are the ones parseArgs accepts. */
export const HELP = `tscni-install: install the tscni CNI plugins into a node's CNI dirs, all or nothing

usage: tscni-install [options]
       tscni-install --uninstall [--bin-dir DIR] [--dry-run]

  --source DIR             the built binaries (default: the dir of this program when
                           compiled, else ./dist/bin)
  --bin-dir DIR            the CNI bin dir (default ${DEFAULT_BIN_DIR})
  --conf-dir DIR           the CNI conf dir (default ${DEFAULT_CONF_DIR})
  --mode multicall|plugins multicall (default): copy tscni once and link each plugin name
                           to it; plugins: copy each plugin's own binary
  --plugins a,b,c          the plugins to install (default: every plugin the source has)
  --conflist FILE          also install this conflist into the conf dir (name kept)
  --conflist-template FILE also install this template, rendered: __POD_CIDR__ becomes
                           the pod CIDR; the name loses its .template suffix
  --pod-cidr CIDR          the node's pod CIDR for the template (default: $POD_CIDR)
  --no-conflist            install no conflist (the default)
  --dry-run                print the plan, change nothing
  --uninstall              put back what the last install replaced and remove what it
                           added, using the record it left in the bin dir
  -h, --help               this text

Every file is written to a temp name in its dir, fsynced and renamed into place; what
it replaces is kept as .NAME.tscni-prev. Each installed plugin must answer
CNI_COMMAND=VERSION. If any step fails, every step done is undone.
Exit status: 0 done, 1 failed (and rolled back), 2 bad usage.
`

const VALUE_OPTIONS = new Set([
  "--source",
  "--bin-dir",
  "--conf-dir",
  "--mode",
  "--plugins",
  "--conflist",
  "--conflist-template",
  "--pod-cidr"
])
const FLAG_OPTIONS = new Set(["--no-conflist", "--dry-run", "--uninstall", "--help", "-h"])

const usage = (message: string): Command => ({ kind: "usage", message })

/** Parses argv (without the program) into a Command; `defaultSource` is used when --source is absent. */
export const parseArgs = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
  defaultSource: string
): Command => {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? ""
    const eq = arg.indexOf("=")
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg
    if (FLAG_OPTIONS.has(name)) {
      if (name !== arg) return usage(`${name} takes no value`)
      flags.add(name === "-h" ? "--help" : name)
      continue
    }
    if (!VALUE_OPTIONS.has(name)) return usage(arg.startsWith("-") ? `unknown option ${arg}` : `unexpected argument ${arg}`)
    const value = name !== arg ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined || value === "") return usage(`${name} needs a value`)
    if (values.has(name)) return usage(`${name} given twice`)
    values.set(name, value)
  }
  if (flags.has("--help")) return { kind: "help" }

  const binDir = resolve(values.get("--bin-dir") ?? DEFAULT_BIN_DIR)
  const dryRun = flags.has("--dry-run")
  if (flags.has("--uninstall")) {
    const extra = [...values.keys(), ...flags].filter((name) => !["--bin-dir", "--dry-run", "--uninstall"].includes(name))
    if (extra.length > 0) return usage(`--uninstall takes only --bin-dir and --dry-run (not ${extra.join(", ")})`)
    return { kind: "uninstall", binDir, dryRun }
  }

  const mode = values.get("--mode") ?? "multicall"
  if (mode !== "multicall" && mode !== "plugins") return usage(`--mode must be multicall or plugins, not ${mode}`)
  const pluginList = values.get("--plugins")
  const plugins = pluginList === undefined ? undefined : pluginList.split(",").map((name) => name.trim()).filter((name) => name !== "")
  if (plugins !== undefined && plugins.length === 0) return usage("--plugins names no plugin")

  const conflistFile = values.get("--conflist")
  const template = values.get("--conflist-template")
  const chosen = [conflistFile, template, flags.has("--no-conflist") ? "none" : undefined].filter((v) => v !== undefined)
  if (chosen.length > 1) return usage("use only one of --conflist, --conflist-template and --no-conflist")
  if (values.has("--pod-cidr") && template === undefined) return usage("--pod-cidr is for --conflist-template")
  const conflist: InstallOptions["conflist"] = conflistFile !== undefined
    ? { kind: "file", path: resolve(conflistFile) }
    : template !== undefined
    ? { kind: "template", path: resolve(template), podCidr: values.get("--pod-cidr") ?? env.POD_CIDR }
    : { kind: "none" }

  return {
    kind: "install",
    options: {
      source: resolve(values.get("--source") ?? defaultSource),
      binDir,
      confDir: resolve(values.get("--conf-dir") ?? DEFAULT_CONF_DIR),
      mode,
      plugins,
      conflist,
      dryRun
    }
  }
}
