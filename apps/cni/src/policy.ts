/**
 * `cni policy`: NetworkPolicy for clusters whose datastore is etcd (no API server). `apply`
 * and `delete` take the YAML or JSON kubectl takes — NetworkPolicy, Pod (labels, declared
 * ports) and Namespace (labels) objects, several per file (`---`, a JSON array, a List) —
 * check every object as an API server would before writing any, and write each under the
 * agents' prefix (@tscni/cluster policyStore.ts). `list` shows what is stored and what the
 * agents will not enforce; `explain` answers whether a connection is allowed, and why, from
 * the same compiled model the agents enforce.
 */
import { Effect } from "effect"
import { decodeFailure, invalidConfig, invalidEnvironment, tryAgainLater, type CniError } from "@tscni/spec/errors"
import type { KvShape } from "@tscni/cluster/kv"

export interface EtcdOptions {
  readonly etcdEndpoints: string
  readonly etcdPrefix: string
}

/** One object of a file, checked, and where it goes. */
interface StoredObject {
  readonly kind: "NetworkPolicy" | "Pod" | "Namespace"
  /** `namespace/name`, or `name` for a Namespace */
  readonly name: string
  /** relative to the prefix: `policies/x/p` */
  readonly path: string
  readonly json: Record<string, unknown>
}

const PATH_OF = { NetworkPolicy: "policies", Pod: "pods", Namespace: "namespaces" } as const

/** The objects of a file's text: YAML (one or more documents) or JSON; arrays and Lists flattened. */
export const parseObjects = (text: string, file: string): Array<unknown> | CniError => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    try {
      // YAML, one document or several (`---`); JSON documents separated by `---` are YAML too
      parsed = Bun.YAML.parse(text)
    } catch (error) {
      return decodeFailure(`${file}: neither JSON nor YAML: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
  const flatten = (value: unknown): Array<unknown> => {
    if (Array.isArray(value)) return value.flatMap(flatten)
    if (value === null || value === undefined) return []
    const list = value as { kind?: unknown; items?: unknown }
    if (list.kind === "List" && Array.isArray(list.items)) return list.items.flatMap(flatten)
    return [value]
  }
  return flatten(parsed)
}

/** Checks every object (all, before anything is written) and says where each goes. */
const checkObjects = (objects: ReadonlyArray<unknown>, defaultNamespace: string, file: string) =>
  Effect.gen(function*() {
    const { decodeNamespace, decodePod, decodePolicy } = yield* Effect.promise(() => import("@tscni/policy/objects"))
    const out: Array<StoredObject> = []
    for (const [i, object] of objects.entries()) {
      const json = object as Record<string, unknown> & { kind?: unknown; metadata?: { namespace?: unknown; name?: unknown } }
      const kind = json?.kind
      if (kind !== "NetworkPolicy" && kind !== "Pod" && kind !== "Namespace") {
        return yield* Effect.fail(invalidConfig(`${file}[${i}].kind`, `'${String(kind)}' is not NetworkPolicy, Pod or Namespace`))
      }
      const problem = (error: { readonly message: string }) => invalidConfig(`${file}[${i}]`, error.message)
      if (kind === "Namespace") {
        const ns = yield* decodeNamespace(json).pipe(Effect.mapError(problem))
        out.push({ kind, name: ns.name, path: `namespaces/${ns.name}`, json })
        continue
      }
      const decoded = kind === "Pod"
        ? yield* decodePod(json, defaultNamespace).pipe(Effect.mapError(problem))
        : yield* decodePolicy(json, defaultNamespace).pipe(Effect.mapError(problem))
      const metadata = { ...(json.metadata as object), namespace: decoded.namespace }
      out.push({ kind, name: `${decoded.namespace}/${decoded.name}`, path: `${PATH_OF[kind]}/${decoded.namespace}/${decoded.name}`, json: { ...json, metadata } })
    }
    return out
  })

/** Runs `use` with an etcd client (loaded only now: other `cni` commands never load gRPC). */
const withEtcd = <A>(options: EtcdOptions, use: (kv: KvShape) => Effect.Effect<A, CniError>): Effect.Effect<A, CniError> =>
  Effect.gen(function*() {
    const { parseEtcdEndpoints } = yield* Effect.promise(() => import("@tscni/cluster/endpoints"))
    const parsed = parseEtcdEndpoints(options.etcdEndpoints)
    if ("bad" in parsed) return yield* Effect.fail(invalidEnvironment("--etcd-endpoints", `'${parsed.bad}' is not an http(s)://HOST:PORT URL`))
    const endpoints = parsed.urls
    const { etcdKvLayer } = yield* Effect.promise(() => import("@tscni/cluster/etcdKv"))
    const { Kv } = yield* Effect.promise(() => import("@tscni/cluster/kv"))
    return yield* Effect.gen(function*() {
      return yield* use(yield* Kv)
    }).pipe(Effect.provide(etcdKvLayer({ endpoints })))
  })

const unreachable = (error: { readonly message: string }) => tryAgainLater(`etcd: ${error.message}`)

const readFile = (file: string) =>
  Effect.tryPromise({ try: () => Bun.file(file).text(), catch: (error) => invalidEnvironment("-f", `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`) })

const say = (lines: ReadonlyArray<string>) => Effect.sync(() => void process.stdout.write(lines.map((line) => `${line}\n`).join("")))

type FileOptions = EtcdOptions & { readonly file: string; readonly namespace: string }

/**
 * Every object of the file checked (all before any is touched), then `act` on each in turn
 * with its key; what it answers is printed as `<kind> <name> <answer>`.
 */
const eachObjectOfFile = (
  options: FileOptions,
  act: (kv: KvShape, key: string, object: StoredObject) => Effect.Effect<string, CniError>
) =>
  Effect.gen(function*() {
    const parsed = parseObjects(yield* readFile(options.file), options.file)
    if (!Array.isArray(parsed)) return yield* Effect.fail(parsed)
    const objects = yield* checkObjects(parsed, options.namespace, options.file)
    yield* withEtcd(options, (kv) =>
      Effect.forEach(objects, (object) =>
        act(kv, `${options.etcdPrefix}/${object.path}`, object).pipe(
          Effect.flatMap((answer) => say([`${object.kind.toLowerCase()} ${object.name} ${answer}`]))
        ), { discard: true }))
  })

/** `cni policy apply -f FILE`: every object checked, then written (`<kind> <name> configured`). */
export const runPolicyApply = (options: FileOptions) =>
  Effect.gen(function*() {
    const { putKey } = yield* Effect.promise(() => import("@tscni/cluster/policyStore"))
    yield* eachObjectOfFile(options, (kv, key, object) =>
      putKey(kv, key, JSON.stringify(object.json)).pipe(
        Effect.mapError(unreachable),
        Effect.flatMap((written) => written ? Effect.succeed("configured") : Effect.fail(tryAgainLater(`${object.path} kept changing while it was written`)))
      ))
  })

/** `cni policy delete -f FILE`: the file's objects deleted (`deleted`, or `not found`). */
export const runPolicyDelete = (options: FileOptions) =>
  Effect.gen(function*() {
    const { deleteKey } = yield* Effect.promise(() => import("@tscni/cluster/policyStore"))
    yield* eachObjectOfFile(options, (kv, key) =>
      deleteKey(kv, key).pipe(Effect.mapError(unreachable), Effect.map((deleted) => (deleted ? "deleted" : "not found"))))
  })

/** A selector as kubectl's describe prints one: `pod=a,tier in (x,y)`; `<all>` for `{}`. */
const describeSelector = (selector: { readonly matchLabels: ReadonlyArray<readonly [string, string]>; readonly expressions: ReadonlyArray<{ readonly key: string; readonly operator: string; readonly values: ReadonlyArray<string> }> }): string => {
  const parts = [
    ...selector.matchLabels.map(([k, v]) => `${k}=${v}`),
    ...selector.expressions.map((e) =>
      e.operator === "Exists" ? e.key : e.operator === "DoesNotExist" ? `!${e.key}` : `${e.key} ${e.operator === "In" ? "in" : "notin"} (${e.values.join(",")})`
    )
  ]
  return parts.length === 0 ? "<all>" : parts.join(",")
}

/** `cni policy list`: the stored NetworkPolicies (one namespace, or all), and the objects the agents will not enforce. */
export const runPolicyList = (options: EtcdOptions & { readonly namespace: string; readonly allNamespaces: boolean; readonly json: boolean }) =>
  Effect.gen(function*() {
    const { readPolicyStore } = yield* Effect.promise(() => import("@tscni/cluster/policyStore"))
    const { store } = yield* withEtcd(options, (kv) => readPolicyStore(kv, options.etcdPrefix).pipe(Effect.mapError(unreachable)))
    const policies = [...store.policies.values()]
      .filter((p) => options.allNamespaces || p.namespace === options.namespace)
      .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))
    const rows = policies.map((p) => ({
      namespace: p.namespace,
      name: p.name,
      podSelector: describeSelector(p.podSelector),
      policyTypes: [...(p.ingress === undefined ? [] : ["Ingress"]), ...(p.egress === undefined ? [] : ["Egress"])].join(","),
      ingressRules: p.ingress?.length ?? 0,
      egressRules: p.egress?.length ?? 0
    }))
    const rejected = [...store.rejected].map(([key, why]) => ({ key, why }))
    if (options.json) return yield* say([JSON.stringify({ policies: rows, notEnforced: rejected })])
    const table = [["NAMESPACE", "NAME", "POD-SELECTOR", "POLICY-TYPES", "RULES"], ...rows.map((r) => [r.namespace, r.name, r.podSelector, r.policyTypes, `${r.ingressRules} in, ${r.egressRules} out`])]
    const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)))
    yield* say(table.map((row) => row.map((cell, c) => cell.padEnd(widths[c]!)).join("   ").trimEnd()))
    if (rejected.length > 0) yield* say(["", "not enforced (cannot be decoded):", ...rejected.map((r) => `  ${r.key}: ${r.why}`)])
  })

/** `PORT/PROTO` (`80/tcp`, `53/UDP`) or a bare protocol without ports (`icmp`). */
export const parsePortProtocol = (text: string): { readonly protocol: "TCP" | "UDP" | "SCTP" | undefined; readonly port: number | undefined } | CniError => {
  const match = /^(\d{1,5})\/(tcp|udp|sctp)$/i.exec(text)
  if (match !== null && Number(match[1]) >= 1 && Number(match[1]) <= 65535) {
    return { protocol: match[2]!.toUpperCase() as "TCP" | "UDP" | "SCTP", port: Number(match[1]) }
  }
  if (/^icmp(v6)?$/i.test(text)) return { protocol: undefined, port: undefined }
  return invalidEnvironment("PORT/PROTO", `'${text}' is not PORT/tcp, PORT/udp, PORT/sctp or icmp`)
}

/** `cni policy explain SRC DST PORT/PROTO`: SRC and DST are `namespace/pod` or an IP address. */
export const runPolicyExplain = (options: EtcdOptions & { readonly source: string; readonly destination: string; readonly port: string; readonly json: boolean }) =>
  Effect.gen(function*() {
    const traffic = parsePortProtocol(options.port)
    if ("code" in traffic) return yield* Effect.fail(traffic)
    const { readPolicyStore } = yield* Effect.promise(() => import("@tscni/cluster/policyStore"))
    const { compile } = yield* Effect.promise(() => import("@tscni/policy/model"))
    const { explain, podWithIp } = yield* Effect.promise(() => import("@tscni/policy/explain"))
    const { parseIp } = yield* Effect.promise(() => import("@tscni/ip"))
    const { store } = yield* withEtcd(options, (kv) => readPolicyStore(kv, options.etcdPrefix).pipe(Effect.mapError(unreachable)))
    const model = compile(store.world())
    const endpoint = (text: string, field: string) => {
      if (parseIp(text) !== undefined) return Effect.succeed({ ip: text, pod: podWithIp(model, text) })
      const pod = model.world.pods.get(text)
      if (pod === undefined) return Effect.fail(invalidEnvironment(field, `'${text}' is neither an IP address nor a known pod (namespace/name)`))
      const ip = pod.ips[0]
      if (ip === undefined) return Effect.fail(invalidEnvironment(field, `pod ${text} has no address yet (not ADDed on any node)`))
      return Effect.succeed({ ip, pod })
    }
    const source = yield* endpoint(options.source, "SRC")
    const destination = yield* endpoint(options.destination, "DST")
    const verdict = explain(model, source, destination, traffic.protocol, traffic.port)
    if (options.json) return yield* say([JSON.stringify(verdict)])
    const name = (e: { readonly ip: string; readonly pod: { readonly namespace: string; readonly name: string } | undefined }) =>
      e.pod === undefined ? e.ip : `${e.pod.namespace}/${e.pod.name} (${e.ip})`
    yield* say([
      `${verdict.allowed ? "ALLOWED" : "DENIED"}: ${name(source)} -> ${name(destination)} ${options.port}`,
      `  egress  (${verdict.egress.allowed ? "allowed" : "denied"}): ${verdict.egress.reason}`,
      `  ingress (${verdict.ingress.allowed ? "allowed" : "denied"}): ${verdict.ingress.reason}`
    ])
  })
