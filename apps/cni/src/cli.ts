/**
 * The `cni` command line (effect/cli): subcommands, flags, help. Each handler runs its
 * command from ./commands.ts and prints any error as the plugin's CNI error on stderr
 * with a non-zero exit code. The dry run and the kernel bindings are imported only by the
 * commands that need them.
 */
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { PluginExec } from "@tscni/steps"
import {
  type AttachmentOptions,
  attachmentOf,
  runAdd,
  runCheck,
  runDel,
  runGc,
  runNetnsCreate,
  runNetnsDelete,
  runNetnsList,
  runStatus
} from "./commands.ts"
import type { CommandError } from "./errors.ts"
import { runPolicyApply, runPolicyDelete, runPolicyExplain, runPolicyList } from "./policy.ts"
import type { Progress } from "./invoke.ts"
import { errorJson, formatError, formatJson, formatResult } from "./output.ts"

/** Prints a command's error (human, or JSON with --json) on stderr and sets exit code 1. */
const reporting = (json: boolean) => <R>(effect: Effect.Effect<void, CommandError, R>): Effect.Effect<void, never, R> =>
  effect.pipe(
    Effect.catch((error) =>
      Effect.sync(() => {
        process.stderr.write((json ? JSON.stringify(errorJson(error)) : formatError(error)) + "\n")
        process.exitCode = 1
      })
    )
  )

const common = {
  confDir: Flag.String("conf-dir").pipe(
    Flag.withDefault("/etc/cni/net.d"),
    Flag.withDescription("where network configurations are: *.conflist, then *.conf / *.json (default /etc/cni/net.d)")
  ),
  binDir: Flag.String("bin-dir").pipe(
    Flag.optional,
    Flag.withDescription("plugin directories, colon-separated (default: $CNI_PATH, else /opt/cni/bin)")
  ),
  cacheDir: Flag.String("cache-dir").pipe(
    Flag.withDefault("/var/lib/cni/results"),
    Flag.withDescription("the result cache, in libcni's format (default /var/lib/cni/results)")
  ),
  json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("print JSON (results, reports, errors)"))
}

const network = Argument.String("network").pipe(Argument.withDescription("the network's name (its conflist's `name`)"))

const attachment = {
  ...common,
  network,
  netns: Argument.String("netns").pipe(Argument.withDescription("a namespace name (/var/run/netns/NAME) or path")),
  ifname: Flag.String("ifname").pipe(Flag.withDefault("eth0"), Flag.withDescription("the interface name in the namespace (default eth0)")),
  containerId: Flag.String("container-id").pipe(
    Flag.optional,
    Flag.withDescription("CNI_CONTAINERID (default: the namespace's name)")
  ),
  args: Flag.String("args").pipe(Flag.optional, Flag.withDescription("CNI_ARGS, K=V;K=V")),
  cap: Flag.String("cap").pipe(
    Flag.atLeast(0),
    Flag.withDescription("a capability arg, NAME=JSON (repeatable), e.g. portMappings='[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\"}]'")
  ),
  annotation: Flag.String("annotation").pipe(
    Flag.atLeast(0),
    Flag.withDescription("a pod annotation K=V (repeatable); kubernetes.io/ingress-bandwidth and egress-bandwidth become the bandwidth capability")
  )
}

const dryRunFlag = Flag.Boolean("dry-run").pipe(
  Flag.withDefault(false),
  Flag.withDescription("run in-process against a model kernel and print the plan; the host is not changed")
)

/** `--dry-run`: the plan, and the result of an ADD. */
const runDryRun = (verb: "ADD" | "DEL", options: AttachmentOptions): Effect.Effect<void, CommandError> =>
  Effect.gen(function*() {
    const attachment = yield* attachmentOf(options)
    const { dryRun, formatPlan } = yield* Effect.promise(() => import("./dryrun/plan.ts"))
    const report = yield* dryRun({ verb, confDir: options.confDir, network: options.network, attachment })
    const text = options.json
      ? formatJson({ ...report, error: report.error === undefined ? undefined : errorJson(report.error) })
      : formatPlan(report, attachment) + (report.result === undefined ? "" : `\n\nresult:\n${formatResult(report.result)}`)
    yield* Effect.sync(() => void process.stdout.write(text + "\n"))
    if (report.error !== undefined) return yield* Effect.fail(report.error)
  })

type Services = PluginExec | Progress

const add = Command.make("add", { ...attachment, dryRun: dryRunFlag }, (o) =>
  reporting(o.json)<Services>(o.dryRun ? runDryRun("ADD", o) : runAdd(o))).pipe(
    Command.withDescription("attach a namespace to a network: ADD through the list, then cache the result")
  )

const check = Command.make("check", attachment, (o) => reporting(o.json)(runCheck(o))).pipe(
  Command.withDescription("CHECK an attachment against its cached result")
)

const del = Command.make("del", { ...attachment, dryRun: dryRunFlag }, (o) =>
  reporting(o.json)<Services>(o.dryRun ? runDryRun("DEL", o) : runDel(o))).pipe(
    Command.withDescription("detach: DEL through the list in reverse with the cached result, then drop the cache entry")
  )

const loadLinux = Effect.promise(() => import("@tscni/backend-linux"))

const gc = Command.make(
  "gc",
  {
    ...common,
    network,
    valid: Flag.String("valid").pipe(
      Flag.atLeast(0),
      Flag.withDescription("a valid attachment CONTAINERID:IFNAME (repeatable; default: cached attachments whose netns exists)")
    )
  },
  (o) => reporting(o.json)(loadLinux.pipe(Effect.flatMap((linux) => runGc(o, linux.isNetns))))
).pipe(Command.withDescription("DEL stale cached attachments of a network, then GC every plugin (cniVersion ≥ 1.1.0)"))

const status = Command.make("status", { ...common, network }, (o) => reporting(o.json)(runStatus(o))).pipe(
  Command.withDescription("STATUS of every plugin of a network (cniVersion ≥ 1.1.0)")
)

const netnsName = Argument.String("name").pipe(Argument.withDescription("the namespace's name under /var/run/netns"))
const json = common.json

const netns = Command.make("netns").pipe(
  Command.withDescription("network namespaces for pods (/var/run/netns)"),
  Command.withSubcommands([
    Command.make("create", { name: netnsName, json }, (o) =>
      reporting(o.json)(loadLinux.pipe(Effect.flatMap((linux) => runNetnsCreate(o.name, o.json).pipe(Effect.provide(linux.layer)))))).pipe(
        Command.withDescription("create /var/run/netns/NAME")
      ),
    Command.make("delete", { name: netnsName, json }, (o) =>
      reporting(o.json)(loadLinux.pipe(Effect.flatMap((linux) => runNetnsDelete(o.name, o.json).pipe(Effect.provide(linux.layer)))))).pipe(
        Command.withDescription("delete a namespace")
      ),
    Command.make("list", { json }, (o) =>
      reporting(o.json)(loadLinux.pipe(Effect.flatMap((linux) => runNetnsList(o.json, linux.isNetns))))).pipe(
        Command.withDescription("the entries of /var/run/netns that are network namespaces")
      )
  ])
)

const etcd = {
  etcdEndpoints: Flag.String("etcd-endpoints").pipe(
    Flag.withDefault(process.env.TSCNI_ETCD_ENDPOINTS ?? "http://127.0.0.1:2379"),
    Flag.withDescription("the cluster's etcd, as the agents' --etcd-endpoints (default: $TSCNI_ETCD_ENDPOINTS, else http://127.0.0.1:2379)")
  ),
  etcdPrefix: Flag.String("etcd-prefix").pipe(
    Flag.withDefault("/tscni/network"),
    Flag.withDescription("where the cluster lives in etcd, as the agents' --etcd-prefix (default /tscni/network)")
  )
}
const policyFile = Flag.String("filename").pipe(Flag.withAlias("f"), Flag.withDescription("YAML or JSON: NetworkPolicy, Pod and Namespace objects (several per file)"))
const policyNamespace = Flag.String("namespace").pipe(Flag.withAlias("n"), Flag.withDefault("default"), Flag.withDescription("the namespace of objects that name none (default: default)"))

const policy = Command.make("policy").pipe(
  Command.withDescription("NetworkPolicy for etcd clusters: apply, delete, list, explain"),
  Command.withSubcommands([
    Command.make("apply", { ...etcd, file: policyFile, namespace: policyNamespace }, (o) => reporting(false)(runPolicyApply(o))).pipe(
      Command.withDescription("check every object of the file, then store each for the agents (NetworkPolicy, Pod labels and ports, Namespace labels)")
    ),
    Command.make("delete", { ...etcd, file: policyFile, namespace: policyNamespace }, (o) => reporting(false)(runPolicyDelete(o))).pipe(
      Command.withDescription("delete the file's objects from the datastore")
    ),
    Command.make("list", {
      ...etcd,
      namespace: policyNamespace,
      allNamespaces: Flag.Boolean("all-namespaces").pipe(Flag.withAlias("A"), Flag.withDefault(false), Flag.withDescription("every namespace")),
      json
    }, (o) => reporting(o.json)(runPolicyList(o))).pipe(
      Command.withDescription("the stored NetworkPolicies, and the objects the agents cannot decode (so do not enforce)")
    ),
    Command.make("explain", {
      ...etcd,
      source: Argument.String("src").pipe(Argument.withDescription("namespace/pod or an IP address")),
      destination: Argument.String("dst").pipe(Argument.withDescription("namespace/pod or an IP address")),
      port: Argument.String("port").pipe(Argument.withDescription("PORT/tcp, PORT/udp, PORT/sctp or icmp")),
      json
    }, (o) => reporting(o.json)(runPolicyExplain(o))).pipe(
      Command.withDescription("whether a new connection is allowed, and which policies and rules decide it (the model the agents enforce)")
    )
  ])
)

/** The whole command tree. */
export const cni = Command.make("cni").pipe(
  Command.withDescription("tscni's CNI runtime: run network configuration lists against network namespaces (libcni + cnitool)"),
  Command.withSubcommands([add, check, del, gc, status, netns, policy])
)

/** Runs the CLI on argv (without the program name). */
export const runCli = Command.runWith(cni, { version: "0.1.0" })
