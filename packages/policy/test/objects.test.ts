import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { decodeNamespace, decodePod, decodePolicy } from "../src/objects.ts"

const problem = (effect: Effect.Effect<unknown, { readonly message: string }>): string =>
  Effect.runSync(effect.pipe(Effect.match({ onFailure: (e) => e.message, onSuccess: () => "decoded" })))

const base = (spec: Record<string, unknown>) => ({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "p", namespace: "x" }, spec: { podSelector: {}, ...spec } })

describe("NetworkPolicy decoding: what an API server would default or refuse", () => {
  test("policyTypes omitted: Ingress always, Egress only when there are egress rules", () => {
    const ingressOnly = Effect.runSync(decodePolicy(base({ ingress: [{}] })))
    expect(ingressOnly.ingress).toHaveLength(1)
    expect(ingressOnly.egress).toBeUndefined()
    const both = Effect.runSync(decodePolicy(base({ egress: [{ to: [{ podSelector: {} }] }] })))
    expect(both.ingress).toEqual([])
    expect(both.egress).toHaveLength(1)
    // an empty egress list is no egress section
    expect(Effect.runSync(decodePolicy(base({ egress: [] }))).egress).toBeUndefined()
    // explicit types win: Egress only, no ingress restriction
    const egressOnly = Effect.runSync(decodePolicy(base({ policyTypes: ["Egress"] })))
    expect(egressOnly.ingress).toBeUndefined()
    expect(egressOnly.egress).toEqual([])
  })

  test("protocol defaults to TCP; a port-less entry is every port of its protocol; endPort makes a range", () => {
    const p = Effect.runSync(decodePolicy(base({ ingress: [{ ports: [{ port: 80 }, { protocol: "UDP" }, { port: 8000, endPort: 8010, protocol: "SCTP" }, { port: "serve-80" }] }] })))
    expect(p.ingress![0]!.ports).toEqual([
      { kind: "numbers", protocol: "TCP", from: 80, to: 80 },
      { kind: "numbers", protocol: "UDP", from: 1, to: 65535 },
      { kind: "numbers", protocol: "SCTP", from: 8000, to: 8010 },
      { kind: "named", protocol: "TCP", name: "serve-80" }
    ])
  })

  test("null fields (as kubectl prints them) are absent ones; the namespace comes from metadata or the default", () => {
    const p = Effect.runSync(decodePolicy({ metadata: { name: "p", labels: null }, spec: { podSelector: { matchLabels: null }, ingress: null } }, "z"))
    expect(p.namespace).toBe("z")
    expect(p.ingress).toEqual([])
  })

  test.each([
    [{ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.1/8" } }] }] }, "spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.1/8' has host bits set"],
    [{ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["11.0.0.0/16"] } }] }] }, "spec.ingress[0].from[0].ipBlock.except[0]: '11.0.0.0/16' is not strictly inside 10.0.0.0/8"],
    [{ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }] }, "spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector"],
    [{ ingress: [{ from: [{}] }] }, "spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock"],
    [{ egress: [{ ports: [{ port: "serve-80", endPort: 90 }] }] }, "spec.egress[0].ports[0].endPort: needs a numeric port, not the name 'serve-80'"],
    [{ egress: [{ ports: [{ port: 90, endPort: 80 }] }] }, "spec.egress[0].ports[0].endPort: 80 must be a port from 90 to 65535"],
    [{ egress: [{ ports: [{ port: 0 }] }] }, "spec.egress[0].ports[0].port: 0 is not a port from 1 to 65535"],
    [{ egress: [{ ports: [{ port: "80" }] }] }, "spec.egress[0].ports[0].port: '80' is a number written as a string"],
    [{ podSelector: { matchExpressions: [{ key: "a", operator: "In" }] } }, "spec.podSelector.matchExpressions[0].values: In needs at least one value"],
    [{ podSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } }, "spec.podSelector.matchExpressions[0].values: Exists takes no values"],
    [{ podSelector: { matchExpressions: [{ key: "a", operator: "Near", values: ["x"] }] } }, "spec.podSelector.matchExpressions[0].operator"],
    [{ ingress: [{ ports: [{ protocol: "ICMP" }] }] }, "spec.ingress[0].ports[0].protocol"]
  ])("refused, naming the field: %j", (spec, expected) => {
    expect(problem(decodePolicy(base(spec)))).toContain(`NetworkPolicy x/p: ${expected}`)
  })

  test("a policy without a podSelector is refused (it is required)", () => {
    expect(problem(decodePolicy({ metadata: { name: "p" }, spec: {} }))).toContain("spec.podSelector")
  })
})

describe("Pod and Namespace decoding", () => {
  test("a pod's declared ports (protocol TCP by default), its IPs from status.podIPs, its node", () => {
    const p = Effect.runSync(decodePod({
      metadata: { name: "a", namespace: "x", labels: { pod: "a" } },
      spec: { nodeName: "n1", containers: [{ ports: [{ name: "http", containerPort: 80 }, { containerPort: 53, protocol: "UDP" }] }] },
      status: { podIPs: [{ ip: "10.0.0.1" }, { ip: "fd00::1" }] }
    }))
    expect(p).toEqual({ namespace: "x", name: "a", labels: { pod: "a" }, ports: [{ name: "http", port: 80, protocol: "TCP" }, { name: undefined, port: 53, protocol: "UDP" }], ips: ["10.0.0.1", "fd00::1"], nodeName: "n1" })
  })

  test("bad labels, ports and IPs are refused naming the field", () => {
    expect(problem(decodePod({ metadata: { name: "a", labels: { "bad key!": "x" } } }))).toContain("metadata.labels: 'bad key!' is not a label key")
    expect(problem(decodePod({ metadata: { name: "a" }, spec: { containers: [{ ports: [{ containerPort: 70000 }] }] } }))).toContain("spec.containers[0].ports[0].containerPort")
    expect(problem(decodePod({ metadata: { name: "a" }, status: { podIPs: [{ ip: "nope" }] } }))).toContain("status.podIPs: 'nope' is not an IP")
  })

  test("a namespace carries the implied kubernetes.io/metadata.name label", () => {
    expect(Effect.runSync(decodeNamespace({ metadata: { name: "x", labels: { ns: "x" } } })).labels).toEqual({ ns: "x", "kubernetes.io/metadata.name": "x" })
  })
})
