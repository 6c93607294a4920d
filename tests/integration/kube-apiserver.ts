/**
 * A test server that follows the Kubernetes API's documented conventions for what tscni
 * uses (no kube-apiserver installs on these machines; docs/cluster.md says what this proves
 * and what it does not):
 *   - TLS with a cluster CA made here by openssl, and bearer-token auth (401 otherwise);
 *   - Nodes: list (a NodeList whose metadata.resourceVersion is the store's), get, create
 *     (409 when it exists), delete, and PATCH with application/merge-patch+json (RFC 7386;
 *     other patch types 415);
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
  readonly stop: () => Promise<void>
}

interface Watcher {
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
  const nodes = new Map<string, Json>()
  const history: Array<{ readonly rv: number; readonly line: string }> = []
  const watchers = new Set<Watcher>()
  let revision = 1
  let compactedAt = 0

  const status = (code: number, reason: string, message: string) =>
    Response.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }, { status: code })

  const record = (type: "ADDED" | "MODIFIED" | "DELETED", object: Json) => {
    const line = JSON.stringify({ type, object }) + "\n"
    history.push({ rv: revision, line })
    for (const watcher of watchers) watcher.send(line)
  }

  /** Stores a changed object under a new resourceVersion and tells the watches. */
  const commit = (type: "ADDED" | "MODIFIED", object: Json): Json => {
    revision++
    const metadata = isRecord(object.metadata) ? object.metadata : {}
    const stored = { apiVersion: "v1", kind: "Node", ...object, metadata: { ...metadata, resourceVersion: String(revision) } }
    nodes.set(String(metadata.name), stored)
    record(type, stored)
    return stored
  }

  const create = (object: Json): Json => commit("ADDED", { ...object, metadata: { ...(object.metadata as Json), uid: crypto.randomUUID() } })
  const patch = (name: string, body: unknown): Json | undefined => {
    const existing = nodes.get(name)
    if (existing === undefined) return undefined
    const patched = mergePatch(existing, body) as Json
    return commit("MODIFIED", { ...patched, metadata: { ...(patched.metadata as Json), name } })
  }
  const remove = (name: string): Json | undefined => {
    const existing = nodes.get(name)
    if (existing === undefined) return undefined
    nodes.delete(name)
    revision++
    const gone = { ...existing, metadata: { ...(existing.metadata as Json), resourceVersion: String(revision) } }
    record("DELETED", gone)
    return gone
  }

  const watch = (from: number, bookmarks: boolean) => {
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined
    const encoder = new TextEncoder()
    const watcher: Watcher = {
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
        for (const past of history) if (past.rv > from) c.enqueue(encoder.encode(past.line))
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
      const match = /^\/api\/v1\/nodes(?:\/([^/]+))?$/.exec(url.pathname)
      if (match === null) return status(404, "NotFound", `the server could not find the requested resource (${url.pathname})`)
      const name = match[1] === undefined ? undefined : decodeURIComponent(match[1])
      if (name === undefined && request.method === "GET") {
        if (url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1") {
          return watch(Number(url.searchParams.get("resourceVersion") ?? revision), url.searchParams.get("allowWatchBookmarks") === "true")
        }
        return Response.json({ kind: "NodeList", apiVersion: "v1", metadata: { resourceVersion: String(revision) }, items: [...nodes.values()] })
      }
      if (name === undefined && request.method === "POST") {
        const object = (await request.json()) as Json
        const objectName = isRecord(object.metadata) ? object.metadata.name : undefined
        if (typeof objectName !== "string" || objectName === "") return status(422, "Invalid", "metadata.name: Required value")
        if (nodes.has(objectName)) return status(409, "AlreadyExists", `nodes "${objectName}" already exists`)
        return Response.json(create(object), { status: 201 })
      }
      const existing = name === undefined ? undefined : nodes.get(name)
      if (name === undefined || existing === undefined) return status(404, "NotFound", `nodes "${name ?? ""}" not found`)
      if (request.method === "GET") return Response.json(existing)
      if (request.method === "PATCH") {
        if (request.headers.get("content-type") !== "application/merge-patch+json") {
          return status(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json`)
        }
        return Response.json(patch(name, await request.json()))
      }
      if (request.method === "DELETE") return Response.json(remove(name))
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
    nodes: () => [...nodes.values()],
    compact: () => {
      compactedAt = revision
      history.length = 0
    },
    bookmark: () => {
      const line = JSON.stringify({ type: "BOOKMARK", object: { kind: "Node", apiVersion: "v1", metadata: { resourceVersion: String(revision) } } }) + "\n"
      for (const watcher of watchers) if (watcher.bookmarks) watcher.send(line)
    },
    endWatches: () => {
      for (const watcher of [...watchers]) watcher.end()
    },
    watchCount: () => watchers.size,
    create,
    patch,
    remove: (name) => remove(name) !== undefined,
    stop: async () => {
      for (const watcher of [...watchers]) watcher.end()
      await server.stop(true)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
