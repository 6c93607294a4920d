/**
 * The oracle against hand-computed expectations, one semantic rule of NetworkPolicy per
 * case (no root, no network). The world: namespaces x (team=x, env=prod), y (team=y,
 * env=dev) and z (no labels), each with pods a (app=a, tier=web), b (app=b, tier=db) and
 * c (app=c, no tier).
 */
import { describe, expect, test } from "bun:test"
import { allowed, expectedMatrix, matrixKey, type OracleNamespace, type OraclePod, type OracleWorld, type Protocol } from "./oracle.ts"

const NAMESPACES: Array<OracleNamespace> = [
  { name: "x", labels: { team: "x", env: "prod" } },
  { name: "y", labels: { team: "y", env: "dev" } },
  { name: "z", labels: {} }
]

const POD_LABELS: Record<string, Record<string, string>> = {
  a: { app: "a", tier: "web" },
  b: { app: "b", tier: "db" },
  c: { app: "c" }
}

const NS_INDEX: Record<string, number> = { x: 1, y: 2, z: 3 }
const POD_INDEX: Record<string, number> = { a: 1, b: 2, c: 3 }

/** x/b declares its "http" on 81 (every other pod on 80), so named ports must resolve per destination. */
const pod = (namespace: string, name: string): OraclePod => ({
  namespace,
  name,
  labels: POD_LABELS[name] ?? {},
  ips: [`10.0.${NS_INDEX[namespace]}.${POD_INDEX[name]}`, `fd00:${NS_INDEX[namespace]}::${POD_INDEX[name]}`],
  ports: [
    { name: "http", port: namespace === "x" && name === "b" ? 81 : 80, protocol: "TCP" },
    { name: "dns", port: 81, protocol: "UDP" }
  ],
  node: "node-1"
})

const PODS = ["x", "y", "z"].flatMap((ns) => ["a", "b", "c"].map((name) => pod(ns, name)))

const world = (...policies: Array<unknown>): OracleWorld => ({ namespaces: NAMESPACES, pods: PODS, policies })

const find = (key: string): OraclePod => {
  const found = PODS.find((p) => `${p.namespace}/${p.name}` === key)
  if (found === undefined) throw new Error(`no pod ${key}`)
  return found
}

/** NetworkPolicy `name` in namespace `ns` with `spec`. */
const np = (ns: string, spec: Record<string, unknown>, name = "p"): unknown => ({
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name, namespace: ns },
  spec
})

const can = (w: OracleWorld, src: string, dst: string, port = 80, protocol: Protocol = "TCP", family?: 4 | 6): boolean =>
  allowed(w, find(src), find(dst), port, protocol, family === undefined ? {} : { family })

/** Which of `sources` may reach `dst` on port/protocol. */
const reachers = (w: OracleWorld, dst: string, port = 80, protocol: Protocol = "TCP"): Array<string> =>
  PODS.map((p) => `${p.namespace}/${p.name}`).filter((src) => src !== dst && can(w, src, dst, port, protocol))

const ALL = PODS.map((p) => `${p.namespace}/${p.name}`)
const others = (dst: string): Array<string> => ALL.filter((key) => key !== dst)

/** Ingress policy on x/b (app=b) with the given `from` peers, all ports. */
const ingressToXB = (from: Array<unknown>): unknown =>
  np("x", { podSelector: { matchLabels: { app: "b" } }, policyTypes: ["Ingress"], ingress: [{ from }] })

describe("isolation", () => {
  test("no policy: everything is allowed, and the matrix has every cell keyed as documented", () => {
    const m = expectedMatrix(world(), PODS, [80, 81], ["TCP", "UDP"])
    expect(m.size).toBe(9 * 9 * 2 * 2)
    expect([...m.values()].every(Boolean)).toBe(true)
    expect(m.get("x/a -> y/b 81/UDP")).toBe(true)
    expect(matrixKey("x/a", "y/b", 81, "UDP")).toBe("x/a -> y/b 81/UDP")
  })

  test("default deny ingress in x: nothing reaches x's pods, x's pods still reach out", () => {
    const w = world(np("x", { podSelector: {}, policyTypes: ["Ingress"] }))
    expect(reachers(w, "x/b")).toEqual([])
    expect(reachers(w, "y/a")).toEqual(others("y/a"))
    expect(can(w, "x/b", "y/a")).toBe(true)
  })

  test("a pod reaching itself is allowed even under deny-all both ways", () => {
    const w = world(np("x", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }))
    expect(can(w, "x/a", "x/a", 80, "TCP")).toBe(true)
    expect(can(w, "x/a", "x/a", 81, "UDP")).toBe(true)
    expect(can(w, "x/a", "x/b")).toBe(false)
  })

  test("a pod no policy selects is unrestricted (only app=b in x is isolated)", () => {
    const w = world(np("x", { podSelector: { matchLabels: { app: "b" } }, policyTypes: ["Ingress", "Egress"] }))
    expect(reachers(w, "x/a")).toEqual(others("x/a").filter((key) => key !== "x/b"))
    expect(can(w, "y/c", "x/a", 81, "UDP")).toBe(true)
    expect(can(w, "x/b", "x/a")).toBe(false) // x/b's own egress is denied
  })

  test("a policy applies only to pods of its own namespace", () => {
    const w = world(np("x", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }))
    expect(can(w, "y/a", "y/b")).toBe(true)
    expect(can(w, "y/a", "z/b")).toBe(true)
    expect(can(w, "y/a", "x/b")).toBe(false)
  })

  test("policies are additive: two policies each allowing one port allow both", () => {
    const p80 = np("x", { podSelector: { matchLabels: { app: "a" } }, ingress: [{ ports: [{ port: 80 }] }] }, "p80")
    const p81 = np("x", { podSelector: { matchLabels: { app: "a" } }, ingress: [{ ports: [{ port: 81, protocol: "UDP" }] }] }, "p81")
    expect([can(world(p80), "y/a", "x/a", 80, "TCP"), can(world(p80), "y/a", "x/a", 81, "UDP")]).toEqual([true, false])
    expect([can(world(p80, p81), "y/a", "x/a", 80, "TCP"), can(world(p80, p81), "y/a", "x/a", 81, "UDP")]).toEqual([true, true])
    expect(can(world(p80, p81), "y/a", "x/a", 81, "TCP")).toBe(false)
  })

  test("a connection needs egress at the source AND ingress at the destination", () => {
    const egressOnlyToB = np("y", { podSelector: { matchLabels: { app: "a" } }, policyTypes: ["Egress"], egress: [{ to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: "b" } } }] }] }, "eg")
    const ingressOnlyFromC = np("x", { podSelector: { matchLabels: { app: "b" } }, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: "c" } } }] }] }, "in")
    expect(can(world(egressOnlyToB), "y/a", "x/b")).toBe(true) // egress ok, ingress unrestricted
    expect(can(world(ingressOnlyFromC), "y/a", "x/b")).toBe(false) // ingress refuses y/a
    expect(can(world(egressOnlyToB, ingressOnlyFromC), "y/c", "x/b")).toBe(true) // y/c is not egress-restricted
    expect(can(world(egressOnlyToB, ingressOnlyFromC), "y/a", "x/b")).toBe(false) // egress yes, ingress no
    expect(can(world(egressOnlyToB, ingressOnlyFromC), "y/a", "x/c")).toBe(false) // ingress unrestricted, egress no
  })
})

describe("policyTypes", () => {
  test("omitted with only ingress rules: Ingress only, egress stays open", () => {
    const w = world(np("x", { podSelector: { matchLabels: { app: "a" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "c" } } }] }] }))
    expect(can(w, "x/c", "x/a")).toBe(true)
    expect(can(w, "x/b", "x/a")).toBe(false)
    expect(reachers(w, "y/b").includes("x/a")).toBe(true)
  })

  test("omitted with egress rules: Ingress and Egress (so no ingress rules = deny all ingress)", () => {
    const w = world(np("x", { podSelector: { matchLabels: { app: "a" } }, egress: [{ to: [{ podSelector: { matchLabels: { app: "b" } } }] }] }))
    expect(can(w, "x/a", "x/b")).toBe(true)
    expect(can(w, "x/a", "x/c")).toBe(false)
    expect(reachers(w, "x/a")).toEqual([])
  })

  test("omitted with an empty egress list: Ingress only", () => {
    const w = world(np("x", { podSelector: { matchLabels: { app: "a" } }, ingress: [{}], egress: [] }))
    expect(can(w, "x/a", "z/c", 81, "UDP")).toBe(true)
    expect(reachers(w, "x/a")).toEqual(others("x/a"))
  })

  test("an empty policyTypes list is treated as omitted", () => {
    const w = world(np("x", { podSelector: { matchLabels: { app: "a" } }, policyTypes: [], egress: [{ ports: [{ port: 81 }] }] }))
    expect([can(w, "x/a", "y/a", 80), can(w, "x/a", "y/a", 81)]).toEqual([false, true])
    expect(reachers(w, "x/a")).toEqual([])
  })

  test("[\"Ingress\"] with no ingress field denies all ingress", () => {
    const w = world(np("y", { podSelector: { matchLabels: { app: "c" } }, policyTypes: ["Ingress"] }))
    expect(reachers(w, "y/c", 80, "TCP")).toEqual([])
    expect(reachers(w, "y/c", 81, "UDP")).toEqual([])
    expect(can(w, "y/c", "y/a")).toBe(true)
  })

  test("[\"Egress\"] ignores ingress rules present in the spec", () => {
    const w = world(np("x", { podSelector: { matchLabels: { app: "a" } }, policyTypes: ["Egress"], ingress: [{ from: [{ podSelector: { matchLabels: { app: "b" } } }] }] }))
    expect(reachers(w, "x/a")).toEqual(others("x/a"))
    expect(can(w, "x/a", "x/b")).toBe(false)
  })

  test("ingress: [{}] allows everything; egress: [{}] too", () => {
    const w = world(np("x", { podSelector: {}, policyTypes: ["Ingress", "Egress"], ingress: [{}], egress: [{}] }))
    expect(reachers(w, "x/a", 81, "UDP")).toEqual(others("x/a"))
    expect(can(w, "x/a", "z/c", 9999, "SCTP")).toBe(true)
  })
})

describe("peers", () => {
  test("a podSelector-only peer means pods of the policy's own namespace", () => {
    expect(reachers(world(ingressToXB([{ podSelector: { matchLabels: { app: "a" } } }])), "x/b")).toEqual(["x/a"])
  })

  test("a podSelector {} peer means every pod of the policy's namespace", () => {
    expect(reachers(world(ingressToXB([{ podSelector: {} }])), "x/b")).toEqual(["x/a", "x/c"])
  })

  test("a namespaceSelector-only peer means every pod of the matching namespaces", () => {
    expect(reachers(world(ingressToXB([{ namespaceSelector: { matchLabels: { team: "y" } } }])), "x/b")).toEqual(["y/a", "y/b", "y/c"])
    expect(reachers(world(ingressToXB([{ namespaceSelector: { matchLabels: { env: "prod" } } }])), "x/b")).toEqual(["x/a", "x/c"])
  })

  test("namespaceSelector {} means every namespace", () => {
    expect(reachers(world(ingressToXB([{ namespaceSelector: {} }])), "x/b")).toEqual(others("x/b"))
  })

  test("the implied kubernetes.io/metadata.name label selects a namespace without labels", () => {
    const w = world(ingressToXB([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "z" } } }]))
    expect(reachers(w, "x/b")).toEqual(["z/a", "z/b", "z/c"])
  })

  test("both selectors in ONE peer are an AND", () => {
    const w = world(ingressToXB([{ namespaceSelector: { matchLabels: { team: "y" } }, podSelector: { matchLabels: { app: "a" } } }]))
    expect(reachers(w, "x/b")).toEqual(["y/a"])
  })

  test("two peers are an OR", () => {
    const w = world(ingressToXB([{ namespaceSelector: { matchLabels: { team: "y" } } }, { podSelector: { matchLabels: { app: "a" } } }]))
    expect(reachers(w, "x/b")).toEqual(["x/a", "y/a", "y/b", "y/c"])
  })

  test("from: [] and from omitted both mean every peer (the ports still restrict)", () => {
    for (const rule of [{ from: [], ports: [{ port: 81 }] }, { ports: [{ port: 81 }] }]) {
      const w = world(np("x", { podSelector: { matchLabels: { app: "b" } }, ingress: [rule] }))
      expect(reachers(w, "x/b", 81)).toEqual(others("x/b"))
      expect(reachers(w, "x/b", 80)).toEqual([])
    }
  })

  test("an egress podSelector-only peer means the policy's namespace too (policy in y)", () => {
    const w = world(np("y", { podSelector: { matchLabels: { app: "a" } }, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: { matchLabels: { app: "b" } } }] }] }))
    expect([can(w, "y/a", "y/b"), can(w, "y/a", "x/b"), can(w, "y/a", "z/b"), can(w, "y/a", "y/c")]).toEqual([true, false, false, false])
  })
})

describe("matchExpressions", () => {
  const bySelector = (podSelector: unknown) => reachers(world(ingressToXB([{ namespaceSelector: { matchLabels: { team: "y" } }, podSelector }])), "x/b")

  test("In: the key is present with one of the values", () => {
    expect(bySelector({ matchExpressions: [{ key: "tier", operator: "In", values: ["web", "db"] }] })).toEqual(["y/a", "y/b"])
  })

  test("NotIn: the value is none of them, or the key is absent", () => {
    expect(bySelector({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] })).toEqual(["y/b", "y/c"])
  })

  test("Exists: the key is present, whatever its value", () => {
    expect(bySelector({ matchExpressions: [{ key: "tier", operator: "Exists" }] })).toEqual(["y/a", "y/b"])
  })

  test("DoesNotExist: the key is absent", () => {
    expect(bySelector({ matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] })).toEqual(["y/c"])
  })

  test("matchLabels and several expressions are all ANDed", () => {
    expect(bySelector({
      matchLabels: { app: "b" },
      matchExpressions: [{ key: "tier", operator: "Exists" }, { key: "app", operator: "NotIn", values: ["a"] }]
    })).toEqual(["y/b"])
    expect(bySelector({ matchLabels: { app: "c" }, matchExpressions: [{ key: "tier", operator: "Exists" }] })).toEqual([])
  })

  test("expressions in a namespaceSelector and in the policy's own podSelector", () => {
    const w = world(np("x", {
      podSelector: { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] },
      ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: "env", operator: "In", values: ["dev"] }] } }] }]
    }))
    expect(reachers(w, "x/c")).toEqual(["y/a", "y/b", "y/c"]) // x/c is selected (no tier); only y is env=dev
    expect(reachers(w, "x/a")).toEqual(others("x/a")) // x/a has a tier: not selected
  })
})

describe("ports", () => {
  const withPorts = (ports: Array<unknown>) => world(np("x", { podSelector: {}, ingress: [{ ports }] }))

  test("protocol defaults to TCP", () => {
    const w = withPorts([{ port: 80 }])
    expect([can(w, "y/a", "x/a", 80, "TCP"), can(w, "y/a", "x/a", 80, "UDP"), can(w, "y/a", "x/a", 81, "TCP")]).toEqual([true, false, false])
  })

  test("a protocol without a port means every port of that protocol", () => {
    const w = withPorts([{ protocol: "UDP" }])
    expect([can(w, "y/a", "x/a", 80, "UDP"), can(w, "y/a", "x/a", 5353, "UDP"), can(w, "y/a", "x/a", 80, "TCP")]).toEqual([true, true, false])
  })

  test("ports omitted or [] means every port and protocol", () => {
    for (const w of [withPorts([]), world(np("x", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] }))]) {
      expect([can(w, "y/a", "x/a", 80, "TCP"), can(w, "y/a", "x/a", 81, "UDP"), can(w, "y/a", "x/a", 7, "SCTP")]).toEqual([true, true, true])
    }
  })

  test("a named port resolves against the destination pod's declared ports", () => {
    const w = withPorts([{ port: "http" }])
    expect([can(w, "y/a", "x/a", 80), can(w, "y/a", "x/a", 81)]).toEqual([true, false]) // x/a: http = 80
    expect([can(w, "y/a", "x/b", 80), can(w, "y/a", "x/b", 81)]).toEqual([false, true]) // x/b: http = 81
  })

  test("a named port must match the protocol too (dns is declared UDP)", () => {
    expect([can(withPorts([{ port: "dns" }]), "y/a", "x/a", 81, "TCP"), can(withPorts([{ port: "dns" }]), "y/a", "x/a", 81, "UDP")]).toEqual([false, false])
    expect([can(withPorts([{ port: "dns", protocol: "UDP" }]), "y/a", "x/a", 81, "UDP"), can(withPorts([{ port: "dns", protocol: "UDP" }]), "y/a", "x/a", 81, "TCP")]).toEqual([true, false])
  })

  test("an unresolvable name matches nothing, and another entry of the rule still counts", () => {
    expect([can(withPorts([{ port: "nope" }]), "y/a", "x/a", 80), can(withPorts([{ port: "nope" }]), "y/a", "x/a", 81, "UDP")]).toEqual([false, false])
    expect(can(withPorts([{ port: "nope" }, { port: 80 }]), "y/a", "x/a", 80)).toBe(true)
  })

  test("endPort is an inclusive range from port", () => {
    const w = withPorts([{ port: 80, endPort: 81 }])
    expect([79, 80, 81, 82].map((port) => can(w, "y/a", "x/a", port))).toEqual([false, true, true, false])
    expect(can(w, "y/a", "x/a", 80, "UDP")).toBe(false)
    const one = withPorts([{ protocol: "UDP", port: 81, endPort: 81 }])
    expect([80, 81, 82].map((port) => can(one, "y/a", "x/a", port, "UDP"))).toEqual([false, true, false])
  })

  test("egress named ports resolve against the destination as well", () => {
    const w = world(np("y", { podSelector: { matchLabels: { app: "a" } }, policyTypes: ["Egress"], egress: [{ ports: [{ port: "http" }] }] }))
    expect([can(w, "y/a", "x/a", 80), can(w, "y/a", "x/b", 80), can(w, "y/a", "x/b", 81)]).toEqual([true, false, true])
  })
})

describe("ipBlock", () => {
  test("a CIDR matches pod IPs, and except carves addresses out of that block", () => {
    const w = world(ingressToXB([{ ipBlock: { cidr: "10.0.2.0/24", except: ["10.0.2.2/32"] } }]))
    expect(reachers(w, "x/b")).toEqual(["y/a", "y/c"])
  })

  test("an excepted address may still be allowed by another policy", () => {
    const block = ingressToXB([{ ipBlock: { cidr: "10.0.2.0/24", except: ["10.0.2.2/32"] } }])
    const other = np("x", { podSelector: { matchLabels: { app: "b" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "y" } }, podSelector: { matchLabels: { app: "b" } } }] }] }, "other")
    expect(reachers(world(block, other), "x/b")).toEqual(["y/a", "y/b", "y/c"])
  })

  test("an excepted address may still be allowed by another peer of the same rule", () => {
    const w = world(ingressToXB([{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.2.0/24"] } }, { ipBlock: { cidr: "10.0.2.3/32" } }]))
    expect(reachers(w, "x/b")).toEqual(["x/a", "x/c", "y/c", "z/a", "z/b", "z/c"])
  })

  test("IPv6 blocks with except; families never cross", () => {
    const w = world(ingressToXB([{ ipBlock: { cidr: "fd00:3::/64", except: ["fd00:3::1/128"] } }]))
    expect(reachers(w, "x/b")).toEqual(["z/b", "z/c"])
    expect([can(w, "z/b", "x/b", 80, "TCP", 6), can(w, "z/b", "x/b", 80, "TCP", 4)]).toEqual([true, false])
    const v4 = world(ingressToXB([{ ipBlock: { cidr: "0.0.0.0/0" } }]))
    expect([can(v4, "z/b", "x/b", 80, "TCP", 4), can(v4, "z/b", "x/b", 80, "TCP", 6)]).toEqual([true, false])
  })

  test("IPv6 notation: compressed, expanded, and an embedded dotted quad", () => {
    const expanded = world(ingressToXB([{ ipBlock: { cidr: "fd00:0002:0000:0000:0000:0000:0000:0000/120" } }]))
    expect(reachers(expanded, "x/b")).toEqual(["y/a", "y/b", "y/c"])
    const mapped = { ...find("y/a"), ips: ["::ffff:10.9.8.7"] }
    const w = world(ingressToXB([{ ipBlock: { cidr: "::ffff:10.9.8.0/120" } }]))
    expect(allowed(w, mapped, find("x/b"), 80, "TCP")).toBe(true)
    expect(allowed(world(ingressToXB([{ ipBlock: { cidr: "10.9.8.0/24" } }])), mapped, find("x/b"), 80, "TCP")).toBe(false)
  })

  test("egress ipBlock matches the destination pod's IPs", () => {
    const w = world(np("x", { podSelector: { matchLabels: { app: "a" } }, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "10.0.3.0/30", except: ["10.0.3.2/32"] } }] }] }))
    expect(["z/a", "z/b", "z/c", "y/a"].map((dst) => can(w, "x/a", dst, 80, "TCP", 4))).toEqual([true, false, true, false])
  })
})

describe("objects Kubernetes would reject", () => {
  test("throw instead of guessing", () => {
    expect(() => can(world(ingressToXB([{}])), "y/a", "x/b")).toThrow("peer needs")
    expect(() => can(world(ingressToXB([{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }])), "y/a", "x/b")).toThrow("ipBlock")
    expect(() => can(world(ingressToXB([{ podSelector: { matchExpressions: [{ key: "a", operator: "Gt", values: ["1"] }] } }])), "x/a", "x/b")).toThrow("operator")
    expect(() => can(world(np("x", { podSelector: {}, ingress: [{ ports: [{ port: "http", endPort: 90 }] }] })), "y/a", "x/b")).toThrow("endPort")
  })
})
