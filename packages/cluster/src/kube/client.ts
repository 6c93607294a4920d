/**
 * A thin Kubernetes API client on Bun's fetch, for the few calls the agent needs: Nodes
 * listed with their resourceVersion, watched from it (ADDED / MODIFIED / DELETED, and
 * BOOKMARK to move the resourceVersion on), `410 Gone` reported so the caller lists again,
 * and a merge-patch of a Node's annotations. Bun's fetch takes the cluster CA as `tls.ca`;
 * @kubernetes/client-node under Bun does not (docs/adr/0007-kubernetes-client.md).
 *
 * Credentials: in-cluster (the service account's token and CA, KUBERNETES_SERVICE_HOST and
 * _PORT, as client-go's rest.InClusterConfig) or a kubeconfig file (its current context's
 * server, certificate-authority(-data) and token or tokenFile).
 */
import { readFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { Effect, Schema } from "effect"

export interface KubeConnection {
  readonly server: string
  /** PEM of the CA the server's certificate must chain to; undefined: the system's */
  readonly ca: string | undefined
  /** read again on every request: a projected service-account token is rotated on disk */
  readonly token: () => string | undefined
}

/** The API server said no, or could not be reached; `gone` for 410 (list again). */
export class KubeError extends Schema.TaggedError<KubeError>()("KubeError", {
  operation: Schema.String,
  status: Schema.optionalKey(Schema.Number),
  message: Schema.String
}) {
  get gone(): boolean {
    return this.status === 410
  }
}

/** The parts of a Node the agent reads. */
export interface KubeNode {
  readonly name: string
  readonly resourceVersion: string
  readonly podCIDRs: ReadonlyArray<string>
  readonly annotations: Readonly<Record<string, string>>
  /** status.addresses of type InternalIP */
  readonly internalIPs: ReadonlyArray<string>
}

export type NodeEvent =
  | { readonly type: "ADDED" | "MODIFIED" | "DELETED"; readonly node: KubeNode }
  | { readonly type: "BOOKMARK"; readonly resourceVersion: string }

/** A watch event of any resource, its object as the server sent it. */
export type ObjectEvent =
  | { readonly type: "ADDED" | "MODIFIED" | "DELETED"; readonly object: unknown }
  | { readonly type: "BOOKMARK"; readonly resourceVersion: string }

const SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

const readOrUndefined = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/** The pod's service account, as a DaemonSet pod sees it; undefined outside a cluster. */
export const inClusterConnection = (env: Readonly<Record<string, string | undefined>> = process.env, dir = SERVICE_ACCOUNT): KubeConnection | undefined => {
  const host = env.KUBERNETES_SERVICE_HOST
  const port = env.KUBERNETES_SERVICE_PORT
  if (host === undefined || port === undefined || readOrUndefined(`${dir}/token`) === undefined) return undefined
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca: readOrUndefined(`${dir}/ca.crt`),
    token: () => readOrUndefined(`${dir}/token`)?.trim()
  }
}

type Yaml = Record<string, unknown>
const record = (value: unknown): Yaml => (typeof value === "object" && value !== null && !Array.isArray(value) ? value as Yaml : {})
const named = (list: unknown, name: unknown): Yaml => record((Array.isArray(list) ? list : []).find((entry) => record(entry).name === name))
const text = (value: unknown): string | undefined => (typeof value === "string" && value !== "" ? value : undefined)

/** The current context of a kubeconfig file (paths in it are relative to the file). */
export const kubeconfigConnection = (path: string): KubeConnection => {
  const config = record(Bun.YAML.parse(readFileSync(path, "utf8")))
  const context = record(named(config.contexts, config["current-context"]).context)
  const cluster = record(named(config.clusters, context.cluster).cluster)
  const user = record(named(config.users, context.user).user)
  const server = text(cluster.server)
  if (server === undefined) throw new Error(`${path}: the current context names no cluster with a server`)
  const relative = (file: string) => resolve(dirname(path), file)
  const caData = text(cluster["certificate-authority-data"])
  const caFile = text(cluster["certificate-authority"])
  const token = text(user.token)
  const tokenFile = text(user.tokenFile)
  return {
    server: server.replace(/\/+$/, ""),
    ca: caData !== undefined ? Buffer.from(caData, "base64").toString("utf8") : caFile !== undefined ? readFileSync(relative(caFile), "utf8") : undefined,
    token: () => token ?? (tokenFile === undefined ? undefined : readOrUndefined(relative(tokenFile))?.trim())
  }
}

const strings = (value: unknown): ReadonlyArray<string> => (Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [])

/** A Node object's parts the agent reads. */
export const nodeOf = (object: unknown): KubeNode => {
  const metadata = record(record(object).metadata)
  const spec = record(record(object).spec)
  const status = record(record(object).status)
  const annotations = Object.fromEntries(Object.entries(record(metadata.annotations)).filter((entry): entry is [string, string] => typeof entry[1] === "string"))
  const podCIDRs = strings(spec.podCIDRs)
  const single = text(spec.podCIDR)
  return {
    name: text(metadata.name) ?? "",
    resourceVersion: text(metadata.resourceVersion) ?? "",
    podCIDRs: podCIDRs.length > 0 ? podCIDRs : single === undefined ? [] : [single],
    annotations,
    internalIPs: (Array.isArray(status.addresses) ? status.addresses : [])
      .map(record).filter((address) => address.type === "InternalIP").flatMap((address) => strings([address.address]))
  }
}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** A Kubernetes API client for Nodes over one connection. */
export const kubeClient = (connection: KubeConnection) => {
  const request = (operation: string, path: string, init: RequestInit = {}) =>
    Effect.tryPromise({
      try: async (signal) => {
        const token = connection.token()
        const response = await fetch(`${connection.server}${path}`, {
          ...init,
          signal,
          headers: { accept: "application/json", ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(init.headers ?? {}) },
          ...(connection.ca === undefined ? {} : { tls: { ca: connection.ca } })
        })
        return response
      },
      catch: (error) => new KubeError({ operation, message: describe(error) })
    }).pipe(
      Effect.flatMap((response) =>
        response.ok
          ? Effect.succeed(response)
          : Effect.promise(() => response.text()).pipe(Effect.flatMap((body) => {
            let message = body.slice(0, 500)
            try {
              message = text(record(JSON.parse(body)).message) ?? message
            } catch {
              // not a Status object: the body as it is
            }
            return Effect.fail(new KubeError({ operation, status: response.status, message: `${response.status}: ${message}` }))
          }))
      )
    )

  const json = (operation: string, path: string, init?: RequestInit) =>
    request(operation, path, init).pipe(
      Effect.flatMap((response) => Effect.tryPromise({ try: () => response.json() as Promise<unknown>, catch: (error) => new KubeError({ operation, message: describe(error) }) }))
    )

  /** Every object of a collection (`/api/v1/pods`), and the resourceVersion to watch from. */
  const listObjects = (path: string) =>
    json(`list ${path}`, path).pipe(
      Effect.map((list) => ({
        items: Array.isArray(record(list).items) ? record(list).items as Array<unknown> : [],
        resourceVersion: text(record(record(list).metadata).resourceVersion) ?? ""
      }))
    )

  /**
   * Watches a collection from `resourceVersion`, calling `onEvent` for each event in order,
   * until the server ends the stream (succeeds: watch again from the last resourceVersion)
   * or fails (`gone`: too old, list again).
   */
  const watchObjects = (path: string, resourceVersion: string, onEvent: (event: ObjectEvent) => Effect.Effect<void>) => {
    const operation = `watch ${path}`
    return request(operation, `${path}?watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(resourceVersion)}`).pipe(
      Effect.flatMap((response) =>
        Effect.tryPromise({
          try: async () => {
            const reader = response.body!.getReader()
            const decoder = new TextDecoder()
            let pending = ""
            for (;;) {
              const { done, value } = await reader.read()
              if (done) return
              pending += decoder.decode(value, { stream: true })
              for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
                const line = pending.slice(0, end).trim()
                pending = pending.slice(end + 1)
                if (line === "") continue
                const event = record(JSON.parse(line))
                const object = record(event.object)
                if (event.type === "ERROR") {
                  // a watch that fell too far behind ends with a Status: 410 Gone
                  const status = typeof object.code === "number" ? object.code : undefined
                  throw new KubeError({ operation, ...(status === undefined ? {} : { status }), message: `${status ?? "error"}: ${text(object.message) ?? "watch error"}` })
                }
                if (event.type === "BOOKMARK") await Effect.runPromise(onEvent({ type: "BOOKMARK", resourceVersion: text(record(object.metadata).resourceVersion) ?? resourceVersion }))
                else if (event.type === "ADDED" || event.type === "MODIFIED" || event.type === "DELETED") await Effect.runPromise(onEvent({ type: event.type, object: event.object }))
              }
            }
          },
          catch: (error) => (error instanceof KubeError ? error : new KubeError({ operation, message: describe(error) }))
        })
      )
    )
  }

  return {
    listObjects,
    watchObjects,
    /** Every Node, and the resourceVersion to watch from. */
    listNodes: listObjects("/api/v1/nodes").pipe(Effect.map(({ items, resourceVersion }) => ({ nodes: items.map(nodeOf), resourceVersion }))),
    getNode: (name: string) => json("getNode", `/api/v1/nodes/${encodeURIComponent(name)}`).pipe(Effect.map(nodeOf)),
    /** Sets (or, with null, removes) annotations of a Node: a JSON merge patch. */
    annotateNode: (name: string, annotations: Readonly<Record<string, string | null>>) =>
      json("annotateNode", `/api/v1/nodes/${encodeURIComponent(name)}`, {
        method: "PATCH",
        headers: { "content-type": "application/merge-patch+json" },
        body: JSON.stringify({ metadata: { annotations } })
      }).pipe(Effect.map(nodeOf)),
    /** watchObjects of the Nodes, their objects read as KubeNode. */
    watchNodes: (resourceVersion: string, onEvent: (event: NodeEvent) => Effect.Effect<void>) =>
      watchObjects("/api/v1/nodes", resourceVersion, (event) => onEvent(event.type === "BOOKMARK" ? event : { type: event.type, node: nodeOf(event.object) }))
  }
}

export type KubeClient = ReturnType<typeof kubeClient>
