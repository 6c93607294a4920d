/**
 * The agent's Kubernetes client (packages/cluster/src/kube/client.ts) against the
 * conventions-following test API server (kube-apiserver.ts: TLS with a cluster CA, token
 * auth, list + watch from a resourceVersion, bookmarks, 410 Gone, merge patch). No real
 * kube-apiserver runs here: this proves the client speaks the documented conventions, not
 * that a real server answers the same (docs/cluster.md).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Deferred, Effect, Fiber } from "effect"
import { inClusterConnection, type KubeClient, kubeClient, kubeconfigConnection, type NodeEvent } from "@tscni/cluster/kube/client"
import { until } from "./cluster.ts"
import { type KubeApiServer, mergePatch, startKubeApiServer } from "./kube-apiserver.ts"

let server: KubeApiServer
let client: KubeClient

/** Creates a Node through the API, as kubelet registers one. */
const register = async (name: string, podCIDRs: ReadonlyArray<string>, internalIP: string) => {
  const response = await fetch(`${server.url}/api/v1/nodes`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: JSON.stringify({ metadata: { name }, spec: { podCIDRs }, status: { addresses: [{ type: "InternalIP", address: internalIP }, { type: "Hostname", address: name }] } }),
    tls: { ca: server.ca }
  })
  expect(response.status).toBe(201)
}

const remove = async (name: string) => {
  const response = await fetch(`${server.url}/api/v1/nodes/${name}`, { method: "DELETE", headers: { authorization: `Bearer ${server.token}` }, tls: { ca: server.ca } })
  expect(response.status).toBe(200)
}

beforeAll(async () => {
  server = startKubeApiServer()
  client = kubeClient(kubeconfigConnection(server.kubeconfig))
  await register("n1", ["10.244.1.0/24", "fd00:10:244:1::/64"], "10.0.0.11")
})

afterAll(async () => {
  await server?.stop()
})

/** Runs a watch from `resourceVersion` until `count` events came (or it ended); the events, or the failure. */
const watchFor = async (resourceVersion: string, count: number, during: () => Promise<void>) => {
  const events: Array<NodeEvent> = []
  const enough = Effect.runSync(Deferred.make<void>())
  const fiber = Effect.runFork(client.watchNodes(resourceVersion, (event) =>
    Effect.gen(function*() {
      events.push(event)
      if (events.length >= count) yield* Deferred.succeed(enough, undefined)
    })))
  await during()
  const outcome = await Effect.runPromise(Effect.raceFirst(Deferred.await(enough).pipe(Effect.as("enough")), Fiber.join(fiber).pipe(Effect.as("ended"), Effect.catch((error) => Effect.succeed(error)))))
  await Effect.runPromise(Fiber.interrupt(fiber))
  return { events, outcome }
}

describe("the Kubernetes client against the conventions test server", () => {
  test("list: every Node with its pod CIDRs, internal IPs and annotations, and the list's resourceVersion", async () => {
    const list = await Effect.runPromise(client.listNodes)
    expect(list.nodes).toEqual([{ name: "n1", resourceVersion: expect.any(String), podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"], annotations: {}, internalIPs: ["10.0.0.11"] }])
    expect(Number(list.resourceVersion)).toBeGreaterThanOrEqual(Number(list.nodes[0]!.resourceVersion))
  })

  test("watch from the list's resourceVersion: later changes in order (ADDED, MODIFIED by an annotation patch, DELETED), and bookmarks", async () => {
    const { resourceVersion } = await Effect.runPromise(client.listNodes)
    const { events, outcome } = await watchFor(resourceVersion, 4, async () => {
      await register("n2", ["10.244.2.0/24"], "10.0.0.12")
      const patched = await Effect.runPromise(client.annotateNode("n2", { "tscni.io/public-ip": "10.0.0.12", "tscni.io/vtep-mac": "0a:58:00:00:00:02" }))
      expect(patched.annotations).toEqual({ "tscni.io/public-ip": "10.0.0.12", "tscni.io/vtep-mac": "0a:58:00:00:00:02" })
      await remove("n2")
      server.bookmark()
    })
    expect(outcome).toBe("enough")
    expect(events.map((event) => (event.type === "BOOKMARK" ? "BOOKMARK" : `${event.type} ${event.node.name} ${JSON.stringify(event.node.annotations)}`))).toEqual([
      "ADDED n2 {}",
      `MODIFIED n2 {"tscni.io/public-ip":"10.0.0.12","tscni.io/vtep-mac":"0a:58:00:00:00:02"}`,
      `DELETED n2 {"tscni.io/public-ip":"10.0.0.12","tscni.io/vtep-mac":"0a:58:00:00:00:02"}`,
      "BOOKMARK"
    ])
    const bookmark = events[3]!
    expect(bookmark.type === "BOOKMARK" && Number(bookmark.resourceVersion) > Number(resourceVersion)).toBe(true)
  })

  test("an annotation patched to null is removed; other patch types are refused by the server (415)", async () => {
    await Effect.runPromise(client.annotateNode("n1", { a: "1", b: "2" }))
    expect((await Effect.runPromise(client.annotateNode("n1", { a: null }))).annotations).toEqual({ b: "2" })
    const strategic = await fetch(`${server.url}/api/v1/nodes/n1`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/strategic-merge-patch+json" },
      body: "{}",
      tls: { ca: server.ca }
    })
    expect(strategic.status).toBe(415)
  })

  test("a watch from a compacted resourceVersion fails as 410 Gone (the caller lists again); a watch the server ends, ends", async () => {
    const { resourceVersion } = await Effect.runPromise(client.listNodes)
    await Effect.runPromise(client.annotateNode("n1", { c: "3" }))
    server.compact()
    const old = await watchFor(resourceVersion, 1, async () => {})
    expect(old.events).toEqual([])
    expect(old.outcome).toEqual(expect.objectContaining({ _tag: "KubeError", status: 410 }))
    expect((old.outcome as { gone: boolean }).gone).toBe(true)
    const current = (await Effect.runPromise(client.listNodes)).resourceVersion
    // streams of earlier watches may still be open on the server: count this one on top
    const open = server.watchCount()
    const ended = await watchFor(current, 1, async () => {
      // end it once it is open, not before
      await until("the watch to be open", () => (server.watchCount() > open ? true : undefined))
      server.endWatches()
    })
    expect(ended.outcome).toBe("ended")
  })

  test("no token or a wrong one: 401; a server certificate from another CA is refused", async () => {
    const anonymous = kubeClient({ server: server.url, ca: server.ca, token: () => undefined })
    const denied = await Effect.runPromise(Effect.flip(anonymous.listNodes))
    expect(denied.status).toBe(401)
    const wrongToken = kubeClient({ server: server.url, ca: server.ca, token: () => "nope" })
    expect((await Effect.runPromise(Effect.flip(wrongToken.getNode("n1")))).status).toBe(401)
    const other = startKubeApiServer()
    try {
      const wrongCa = kubeClient({ server: server.url, ca: other.ca, token: () => server.token })
      const refused = await Effect.runPromise(Effect.flip(wrongCa.listNodes))
      expect(refused.status).toBeUndefined()
      expect(refused.message).toMatch(/certificate/)
    } finally {
      await other.stop()
    }
  })

  test("in-cluster credentials: the service account's token (read again on each request) and CA, the service host and port", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tscni-sa-"))
    try {
      writeFileSync(join(dir, "ca.crt"), server.ca)
      writeFileSync(join(dir, "token"), "stale")
      const port = new URL(server.url).port
      const connection = inClusterConnection({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: port }, dir)!
      expect(connection.server).toBe(`https://127.0.0.1:${port}`)
      const inCluster = kubeClient(connection)
      expect((await Effect.runPromise(Effect.flip(inCluster.listNodes))).status).toBe(401)
      // the kubelet rotates the projected token on disk: the next request uses the new one
      writeFileSync(join(dir, "token"), `${server.token}\n`)
      expect((await Effect.runPromise(inCluster.listNodes)).nodes.map((node) => node.name)).toEqual(["n1"])
      expect(inClusterConnection({}, dir)).toBeUndefined()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test("merge patch semantics of the test server (RFC 7386)", () => {
    expect(mergePatch({ a: { b: 1, c: 2 }, d: [1] }, { a: { b: null, e: 3 }, d: [2] })).toEqual({ a: { c: 2, e: 3 }, d: [2] })
  })
})
