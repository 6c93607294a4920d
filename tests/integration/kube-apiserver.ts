/**
 * A test server that follows the Kubernetes API's documented conventions for what tscni
 * uses (no kube-apiserver installs on these machines; docs/cluster.md says what this proves
 * and what it does not):
 *   - TLS with a cluster CA made here by openssl, and bearer-token auth (401 otherwise);
 *   - Nodes, Namespaces (cluster-scoped), Pods and NetworkPolicies (namespaced, listed across
 *     namespaces at /api/v1/pods and /apis/networking.k8s.io/v1/networkpolicies): list (a
 *     List whose metadata.resourceVersion is the store's), get, create (409 when it exists),
 *     delete, and PATCH with application/merge-patch+json (RFC 7386; other patch types 415);
 *   - watch (`?watch=true&resourceVersion=RV`): every change after RV, in order, as
 *     newline-delimited ADDED / MODIFIED / DELETED events; BOOKMARK events when asked
 *     (`allowWatchBookmarks=true`) and the test calls `bookmark()`; a resourceVersion older
 *     than the compacted history gets one ERROR event with a 410 "Expired" Status, as the
 *     real server answers a watch it cannot serve; `endWatches()` closes every stream as the
 *     server's watch timeout does.
 * Every object change bumps one global resourceVersion, as etcd's revision does.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

type Json = Record<string, unknown>
const isRecord = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

/** RFC 7386: objects merge key by key, null deletes, anything else replaces. */
export const mergePatch = (target: unknown, patch: unknown): unknown => {
  if (!isRecord(patch)) return patch
  const result: Json = isRecord(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]
    else result[key] = mergePatch(result[key], value)
  }
  return result
}

export interface KubeApiServer {
  readonly url: string
  /** PEM of the cluster CA */
  readonly ca: string
  readonly caFile: string
  readonly token: string
  /** a kubeconfig for it (certificate-authority as a file path, token) */
  readonly kubeconfig: string
  /** every Node now */
  readonly nodes: () => ReadonlyArray<Json>
  /** every object of a resource now */
  readonly objects: (resource: Resource) => ReadonlyArray<Json>
  /** forgets history up to now: watches from an older resourceVersion get 410 */
  readonly compact: () => void
  /** sends a BOOKMARK at the current resourceVersion on every watch that asked for them */
  readonly bookmark: () => void
  /** ends every watch stream, as the server's watch timeout does */
  readonly endWatches: () => void
  /** how many watch streams are open */
  readonly watchCount: () => number
  /** what a client's create, merge patch and delete do, done by the test itself */
  readonly create: (node: Json) => Json
  readonly patch: (name: string, patch: Json) => Json | undefined
  readonly remove: (name: string) => boolean
  /** the same for any resource; `key` is `name`, or `namespace/name` for namespaced ones */
  readonly createIn: (resource: Resource, object: Json) => Json
  readonly patchIn: (resource: Resource, key: string, patch: Json) => Json | undefined
  /** the deleted object at the resourceVersion of its deletion */
  readonly removeIn: (resource: Resource, key: string) => Json | undefined
  readonly stop: () => Promise<void>
}

/** The resources served, with their kind, group version and scope. */
const RESOURCES = {
  nodes: { kind: "Node", apiVersion: "v1", namespaced: false },
  namespaces: { kind: "Namespace", apiVersion: "v1", namespaced: false },
  pods: { kind: "Pod", apiVersion: "v1", namespaced: true },
  networkpolicies: { kind: "NetworkPolicy", apiVersion: "networking.k8s.io/v1", namespaced: true }
} as const
export type Resource = keyof typeof RESOURCES

/**
 * The resource, namespace and name a path names: `/api/v1/nodes[/n]`,
 * `/api/v1/namespaces[/n]`, `/api/v1/pods`, `/api/v1/namespaces/NS/pods[/n]`,
 * `/apis/networking.k8s.io/v1/networkpolicies`, `/apis/networking.k8s.io/v1/namespaces/NS/networkpolicies[/n]`.
 */
const route = (path: string): { readonly resource: Resource; readonly namespace: string | undefined; readonly name: string | undefined } | undefined => {
  const match = /^\/(?:api\/v1|apis\/networking\.k8s\.io\/v1)(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+))?$/.exec(path)
  const plain = /^\/api\/v1\/(nodes|namespaces)(?:\/([^/]+))?$/.exec(path)
  if (plain !== null) return { resource: plain[1] as Resource, namespace: undefined, name: plain[2] === undefined ? undefined : decodeURIComponent(plain[2]) }
  if (match === null || !(match[2]! in RESOURCES)) return undefined
  const resource = match[2] as Resource
  const group = RESOURCES[resource].apiVersion === "v1" ? "/api/v1" : "/apis/networking.k8s.io/v1"
  if (!path.startsWith(group) || !RESOURCES[resource].namespaced) return undefined
  const namespace = match[1] === undefined ? undefined : decodeURIComponent(match[1])
  // a namespaced object is reached only through its namespace
  if (namespace === undefined && match[3] !== undefined) return undefined
  return { resource, namespace, name: match[3] === undefined ? undefined : decodeURIComponent(match[3]) }
}

interface Watcher {
  readonly resource: Resource
  readonly send: (line: string) => void
  readonly end: () => void
  readonly bookmarks: boolean
}

/** Makes a CA and a server certificate for `address` (an IP), with openssl. */
const makeCertificates = (dir: string, address: string) => {
  const run = (...args: Array<string>) => {
    const out = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe" })
    if (out.exitCode !== 0) throw new Error(`openssl ${args[0]}: ${out.stderr.toString()}`)
  }
  run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=tscni-test-cluster-ca")
  run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver")
  writeFileSync(join(dir, "san.cnf"), `subjectAltName=IP:${address},DNS:kubernetes.default.svc\n`)
  run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf")
}

/** Starts the server on `address` (default 127.0.0.1), a free port. */
export const startKubeApiServer = (options: { readonly address?: string } = {}): KubeApiServer => {
  const address = options.address ?? "127.0.0.1"
  const dir = mkdtempSync(join(tmpdir(), "tscni-kube-"))
  makeCertificates(dir, address)
  const token = crypto.randomUUID()
  const stores = new Map<Resource, Map<string, Json>>(Object.keys(RESOURCES).map((resource) => [resource as Resource, new Map()]))
  const storeOf = (resource: Resource) => stores.get(resource)!
  const history: Array<{ readonly rv: number; readonly resource: Resource; readonly line: string }> = []
  const watchers = new Set<Watcher>()
  let revision = 1
  let compactedAt = 0

  const status = (code: number, reason: string, message: string) =>
    Response.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }, { status: code })

  const record = (resource: Resource, type: "ADDED" | "MODIFIED" | "DELETED", object: Json) => {
    const line = JSON.stringify({ type, object }) + "\n"
    history.push({ rv: revision, resource, line })
    for (const watcher of watchers) if (watcher.resource === resource) watcher.send(line)
  }

  const keyOf = (resource: Resource, metadata: Json) =>
    RESOURCES[resource].namespaced ? `${String(metadata.namespace ?? "default")}/${String(metadata.name)}` : String(metadata.name)

  /** Stores a changed object under a new resourceVersion and tells the watches. */
  const commit = (resource: Resource, type: "ADDED" | "MODIFIED", object: Json): Json => {
    revision++
    const metadata = isRecord(object.metadata) ? object.metadata : {}
    const { kind, apiVersion, namespaced } = RESOURCES[resource]
    const stored = { apiVersion, kind, ...object, metadata: { ...metadata, ...(namespaced ? { namespace: metadata.namespace ?? "default" } : {}), resourceVersion: String(revision) } }
    storeOf(resource).set(keyOf(resource, stored.metadata), stored)
    record(resource, type, stored)
    return stored
  }

  const createIn = (resource: Resource, object: Json): Json => commit(resource, "ADDED", { ...object, metadata: { ...(object.metadata as Json), uid: crypto.randomUUID() } })
  const patchIn = (resource: Resource, key: string, body: unknown): Json | undefined => {
    const existing = storeOf(resource).get(key)
    if (existing === undefined) return undefined
    const patched = mergePatch(existing, body) as Json
    const metadata = existing.metadata as Json
    return commit(resource, "MODIFIED", { ...patched, metadata: { ...(patched.metadata as Json), name: metadata.name, ...(metadata.namespace === undefined ? {} : { namespace: metadata.namespace }) } })
  }
  const removeIn = (resource: Resource, key: string): Json | undefined => {
    const existing = storeOf(resource).get(key)
    if (existing === undefined) return undefined
    storeOf(resource).delete(key)
    revision++
    const gone = { ...existing, metadata: { ...(existing.metadata as Json), resourceVersion: String(revision) } }
    record(resource, "DELETED", gone)
    return gone
  }

  const watch = (resource: Resource, from: number, bookmarks: boolean) => {
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined
    const encoder = new TextEncoder()
    const watcher: Watcher = {
      resource,
      bookmarks,
      send: (line) => controller?.enqueue(encoder.encode(line)),
      end: () => {
        watchers.delete(watcher)
        try {
          controller?.close()
        } catch {
          // already closed by the client
        }
      }
    }
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c
        if (from < compactedAt) {
          c.enqueue(encoder.encode(JSON.stringify({
            type: "ERROR",
            object: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: ${from} (${compactedAt})`, reason: "Expired", code: 410 }
          }) + "\n"))
          c.close()
          return
        }
        // Bun sends the response's headers with its first chunk: a blank line (whitespace
        // between JSON objects, skipped by stream decoders) sends them at once, as the real
        // server answers a watch before any event
        c.enqueue(encoder.encode("\n"))
        for (const past of history) if (past.rv > from && past.resource === resource) c.enqueue(encoder.encode(past.line))
        watchers.add(watcher)
      },
      cancel() {
        watchers.delete(watcher)
      }
    })
    return new Response(stream, { headers: { "content-type": "application/json", "transfer-encoding": "chunked" } })
  }

  const server = Bun.serve({
    hostname: address,
    port: 0,
    tls: { cert: readFileSync(join(dir, "server.crt"), "utf8"), key: readFileSync(join(dir, "server.key"), "utf8") },
    idleTimeout: 0,
    fetch: async (request) => {
      if (request.headers.get("authorization") !== `Bearer ${token}`) return status(401, "Unauthorized", "Unauthorized")
      const url = new URL(request.url)
      const at = route(url.pathname)
      if (at === undefined) return status(404, "NotFound", `the server could not find the requested resource (${url.pathname})`)
      const { resource, namespace, name } = at
      const { kind, apiVersion, namespaced } = RESOURCES[resource]
      if (name === undefined && request.method === "GET") {
        if (url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1") {
          return watch(resource, Number(url.searchParams.get("resourceVersion") ?? revision), url.searchParams.get("allowWatchBookmarks") === "true")
        }
        const items = [...storeOf(resource).values()].filter((object) => namespace === undefined || (object.metadata as Json).namespace === namespace)
        return Response.json({ kind: `${kind}List`, apiVersion, metadata: { resourceVersion: String(revision) }, items })
      }
      if (name === undefined && request.method === "POST") {
        if (namespaced && namespace === undefined) return status(405, "MethodNotAllowed", `create ${resource} in a namespace`)
        const object = (await request.json()) as Json
        const metadata = isRecord(object.metadata) ? object.metadata : {}
        if (typeof metadata.name !== "string" || metadata.name === "") return status(422, "Invalid", "metadata.name: Required value")
        if (namespaced && metadata.namespace !== undefined && metadata.namespace !== namespace) {
          return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        }
        const full = { ...object, metadata: { ...metadata, ...(namespaced ? { namespace } : {}) } }
        if (storeOf(resource).has(keyOf(resource, full.metadata))) return status(409, "AlreadyExists", `${resource} "${metadata.name}" already exists`)
        return Response.json(createIn(resource, full), { status: 201 })
      }
      const key = name === undefined ? undefined : namespaced ? `${namespace}/${name}` : name
      const existing = key === undefined ? undefined : storeOf(resource).get(key)
      if (key === undefined || existing === undefined) return status(404, "NotFound", `${resource} "${name ?? ""}" not found`)
      if (request.method === "GET") return Response.json(existing)
      if (request.method === "PATCH") {
        if (request.headers.get("content-type") !== "application/merge-patch+json") {
          return status(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json`)
        }
        return Response.json(patchIn(resource, key, await request.json()))
      }
      if (request.method === "DELETE") return Response.json(removeIn(resource, key))
      return status(405, "MethodNotAllowed", `${request.method} is not allowed`)
    }
  })

  const url = `https://${address}:${server.port}`
  const caFile = join(dir, "ca.crt")
  const kubeconfig = join(dir, "kubeconfig")
  writeFileSync(join(dir, "token"), token)
  writeFileSync(kubeconfig, [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: test",
    "  cluster:",
    `    server: ${url}`,
    "    certificate-authority: ca.crt",
    "users:",
    "- name: agent",
    "  user:",
    "    tokenFile: token",
    "contexts:",
    "- name: test",
    "  context: {cluster: test, user: agent}",
    "current-context: test",
    ""
  ].join("\n"))
  return {
    url,
    ca: readFileSync(caFile, "utf8"),
    caFile,
    token,
    kubeconfig,
    nodes: () => [...storeOf("nodes").values()],
    objects: (resource) => [...storeOf(resource).values()],
    compact: () => {
      compactedAt = revision
      history.length = 0
    },
    bookmark: () => {
      for (const watcher of watchers) {
        const { kind, apiVersion } = RESOURCES[watcher.resource]
        if (watcher.bookmarks) watcher.send(JSON.stringify({ type: "BOOKMARK", object: { kind, apiVersion, metadata: { resourceVersion: String(revision) } } }) + "\n")
      }
    },
    endWatches: () => {
      for (const watcher of [...watchers]) watcher.end()
    },
    watchCount: () => watchers.size,
    create: (node) => createIn("nodes", node),
    patch: (name, body) => patchIn("nodes", name, body),
    remove: (name) => removeIn("nodes", name) !== undefined,
    createIn,
    patchIn,
    removeIn,
    stop: async () => {
      for (const watcher of [...watchers]) watcher.end()
      await server.stop(true)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
