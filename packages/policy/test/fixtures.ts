/** A small world for the policy package's tests: namespaces x and y, pods a and b in each. */
import { Effect } from "effect"
import { compile, type Model, type World } from "../src/model.ts"
import { decodePolicy, implicitNamespace, type Pod, type Policy } from "../src/objects.ts"

export const pod = (namespace: string, name: string, ip: string, extra: Partial<Pod> = {}): Pod => ({
  namespace,
  name,
  labels: { pod: name },
  ports: [{ name: "serve-80-tcp", port: 80, protocol: "TCP" }, { name: "serve-81-udp", port: 81, protocol: "UDP" }],
  ips: [ip],
  nodeName: "node1",
  ...extra
})

export const PODS: ReadonlyArray<Pod> = [
  pod("x", "a", "10.0.1.1"),
  pod("x", "b", "10.0.1.2", { nodeName: "node2" }),
  pod("y", "a", "10.0.2.1"),
  pod("y", "b", "10.0.2.2", { nodeName: "node2" })
]

export const policy = (json: unknown): Policy => Effect.runSync(decodePolicy(json))

export const worldOf = (policies: ReadonlyArray<unknown>, pods: ReadonlyArray<Pod> = PODS): World => ({
  namespaces: new Map(["x", "y"].map((name) => [name, implicitNamespace(name, { ns: name })])),
  pods: new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p])),
  policies: new Map(policies.map(policy).map((p) => [`${p.namespace}/${p.name}`, p]))
})

export const modelOf = (policies: ReadonlyArray<unknown>, pods?: ReadonlyArray<Pod>): Model => compile(worldOf(policies, pods))
