/**
 * The conventions test API server (kube-apiserver.ts) as a process of its own, so it can
 * listen inside a test cluster's namespace where the nodes reach it:
 *   ip netns exec NS bun tests/integration/kube-apiserver-main.ts ADDRESS
 * It prints `{"url", "ca", "token", "kubeconfig"}` as its first line, then takes one JSON
 * command per stdin line and answers each with one line:
 *   {"op":"create","node":{…}}  {"op":"get","name":"n1"}  {"op":"patch","name":"n1","patch":{…}}  {"op":"delete","name":"n1"}
 *   {"op":"compact"}  {"op":"bookmark"}  {"op":"endWatches"}  {"op":"stop"}
 * and for any resource (nodes, namespaces, pods, networkpolicies; KEY is name or namespace/name):
 *   {"op":"createIn","resource":R,"object":{…}}  {"op":"patchIn","resource":R,"key":KEY,"patch":{…}}  {"op":"removeIn","resource":R,"key":KEY}
 */
import { type Resource, startKubeApiServer } from "./kube-apiserver.ts"

const server = startKubeApiServer({ address: process.argv[2] ?? "127.0.0.1" })
process.stdout.write(JSON.stringify({ url: server.url, ca: server.ca, token: server.token, kubeconfig: server.kubeconfig }) + "\n")

const answer = (value: unknown) => process.stdout.write(JSON.stringify(value ?? null) + "\n")
let pending = ""
for await (const chunk of Bun.stdin.stream()) {
  pending += new TextDecoder().decode(chunk)
  for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
    const command = JSON.parse(pending.slice(0, end)) as { op: string; node?: Record<string, unknown>; name?: string; patch?: Record<string, unknown>; resource?: Resource; key?: string; object?: Record<string, unknown> }
    pending = pending.slice(end + 1)
    if (command.op === "create") answer(server.create(command.node ?? {}))
    else if (command.op === "get") answer(server.nodes().find((node) => (node.metadata as { name?: string }).name === command.name))
    else if (command.op === "patch") answer(server.patch(command.name ?? "", command.patch ?? {}))
    else if (command.op === "delete") answer(server.remove(command.name ?? ""))
    else if (command.op === "createIn") answer(server.createIn(command.resource ?? "nodes", command.object ?? {}))
    else if (command.op === "patchIn") answer(server.patchIn(command.resource ?? "nodes", command.key ?? "", command.patch ?? {}))
    else if (command.op === "removeIn") answer(server.removeIn(command.resource ?? "nodes", command.key ?? ""))
    else if (command.op === "compact") answer(server.compact())
    else if (command.op === "bookmark") answer(server.bookmark())
    else if (command.op === "endWatches") answer(server.endWatches())
    else if (command.op === "stop") {
      await server.stop()
      answer(true)
      process.exit(0)
    } else answer({ error: `unknown op ${command.op}` })
  }
}
await server.stop()
