import { describe, expect, test } from "bun:test"
import { explain, podWithIp } from "../src/explain.ts"
import type { Model } from "../src/model.ts"
import type { Protocol } from "../src/objects.ts"
import { modelOf, pod, PODS } from "./fixtures.ts"

const np = (name: string, namespace: string, spec: Record<string, unknown>) => ({ metadata: { name, namespace }, spec })

/** Whether a new connection from pod `src` to pod `dst` (by `ns/name`) is allowed. */
const allowed = (model: Model, src: string, dst: string, protocol: Protocol = "TCP", port = 80): boolean => {
  const s = model.world.pods.get(src)!
  const d = model.world.pods.get(dst)!
  return explain(model, { ip: s.ips[0]!, pod: s }, { ip: d.ips[0]!, pod: d }, protocol, port).allowed
}

describe("the compiled model, judged by explain", () => {
  test("no policy: everything is allowed, and says why", () => {
    const model = modelOf([])
    const v = explain(model, { ip: "10.0.1.1", pod: PODS[0] }, { ip: "10.0.2.1", pod: PODS[2] }, "TCP", 80)
    expect(v.allowed).toBe(true)
    expect(v.ingress.reason).toBe("no ingress policy selects y/a: its ingress is unrestricted")
  })

  test("default deny ingress in x: x's pods refuse everyone, y's do not; egress stays open", () => {
    const model = modelOf([np("deny", "x", { podSelector: {} })])
    expect(allowed(model, "y/a", "x/a")).toBe(false)
    expect(allowed(model, "x/b", "x/a")).toBe(false)
    expect(allowed(model, "x/a", "y/a")).toBe(true)
    const v = explain(model, { ip: "10.0.2.1", pod: PODS[2] }, { ip: "10.0.1.1", pod: PODS[0] }, "TCP", 80)
    expect(v.ingress.reason).toBe("x/a is isolated for ingress by x/deny and no rule of theirs admits this")
  })

  test("a podSelector-only peer is the policy's own namespace; with a namespaceSelector it is their AND; two peers are OR", () => {
    const own = modelOf([np("p", "x", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }] })])
    expect(allowed(own, "x/b", "x/a")).toBe(true)
    expect(allowed(own, "y/b", "x/a")).toBe(false)
    const and = modelOf([np("p", "x", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } }, podSelector: { matchLabels: { pod: "b" } } }] }] })])
    expect(allowed(and, "y/b", "x/a")).toBe(true)
    expect(allowed(and, "y/a", "x/a")).toBe(false)
    expect(allowed(and, "x/b", "x/a")).toBe(false)
    const or = modelOf([np("p", "x", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }, { podSelector: { matchLabels: { pod: "b" } } }] }] })])
    expect(allowed(or, "y/a", "x/a")).toBe(true)
    expect(allowed(or, "x/b", "x/a")).toBe(true)
  })

  test("matchExpressions: In, NotIn (absent key matches), Exists, DoesNotExist", () => {
    const peers = (expression: unknown) => modelOf([np("p", "x", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [expression] } }] }] })])
    expect(allowed(peers({ key: "pod", operator: "In", values: ["b"] }), "y/b", "x/a")).toBe(true)
    expect(allowed(peers({ key: "pod", operator: "In", values: ["b"] }), "y/a", "x/a")).toBe(false)
    expect(allowed(peers({ key: "pod", operator: "NotIn", values: ["b"] }), "y/a", "x/a")).toBe(true)
    expect(allowed(peers({ key: "pod", operator: "NotIn", values: ["b"] }), "y/b", "x/a")).toBe(false)
    expect(allowed(peers({ key: "tier", operator: "NotIn", values: ["b"] }), "y/b", "x/a")).toBe(true)
    expect(allowed(peers({ key: "pod", operator: "Exists" }), "y/b", "x/a")).toBe(true)
    expect(allowed(peers({ key: "pod", operator: "DoesNotExist" }), "y/b", "x/a")).toBe(false)
  })

  test("ports: numbers, ranges (inclusive), names resolved against the destination pod with their protocol", () => {
    const model = modelOf([np("p", "x", { podSelector: {}, ingress: [{ ports: [{ port: 8000, endPort: 8010 }, { port: "serve-80-tcp" }, { port: "serve-81-udp", protocol: "UDP" }, { port: "serve-81-udp" }] }] })])
    expect(allowed(model, "y/a", "x/a", "TCP", 8000)).toBe(true)
    expect(allowed(model, "y/a", "x/a", "TCP", 8010)).toBe(true)
    expect(allowed(model, "y/a", "x/a", "TCP", 8011)).toBe(false)
    expect(allowed(model, "y/a", "x/a", "UDP", 8000)).toBe(false)
    expect(allowed(model, "y/a", "x/a", "TCP", 80)).toBe(true)
    expect(allowed(model, "y/a", "x/a", "UDP", 81)).toBe(true)
    // 'serve-81-udp' over TCP names no TCP port: matches nothing
    expect(allowed(model, "y/a", "x/a", "TCP", 81)).toBe(false)
    // ICMP is in no port list (protocol and port undefined)
    const [ya, xa] = [model.world.pods.get("y/a")!, model.world.pods.get("x/a")!]
    expect(explain(model, { ip: ya.ips[0]!, pod: ya }, { ip: xa.ips[0]!, pod: xa }, undefined, undefined).allowed).toBe(false)
  })

  test("ipBlock except: cut out of that block only; another policy may still allow it", () => {
    const block = np("block", "x", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.2.0/24"] } }] }] })
    const model = modelOf([block])
    expect(allowed(model, "x/b", "x/a")).toBe(true)
    expect(allowed(model, "y/a", "x/a")).toBe(false)
    const both = modelOf([block, np("ya", "x", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.2.1/32" } }] }] })])
    expect(allowed(both, "y/a", "x/a")).toBe(true)
    expect(allowed(both, "y/b", "x/a")).toBe(false)
  })

  test("a connection needs the source's egress and the destination's ingress; a pod reaching itself is always allowed", () => {
    const egressDeny = np("eg", "y", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Egress"] })
    const model = modelOf([egressDeny, np("allow", "x", { podSelector: {}, ingress: [{}] })])
    expect(allowed(model, "y/a", "x/a")).toBe(false)
    expect(allowed(model, "y/b", "x/a")).toBe(true)
    expect(allowed(model, "y/a", "y/a")).toBe(true)
    const v = explain(model, { ip: "10.0.2.2", pod: PODS[3] }, { ip: "10.0.1.1", pod: PODS[0] }, "TCP", 80)
    expect(v.ingress.allowedBy).toEqual(["x/allow ingress[0]"])
  })

  test("an address outside the pods is judged by ipBlocks only, and podWithIp finds pods by address", () => {
    const model = modelOf([np("p", "x", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "192.0.2.0/24" } }] }] })])
    const xa = model.world.pods.get("x/a")!
    expect(explain(model, { ip: "192.0.2.7", pod: undefined }, { ip: "10.0.1.1", pod: xa }, "TCP", 80).allowed).toBe(true)
    expect(explain(model, { ip: "198.51.100.7", pod: undefined }, { ip: "10.0.1.1", pod: xa }, "TCP", 80).allowed).toBe(false)
    expect(podWithIp(model, "10.0.2.2")?.name).toBe("b")
    expect(podWithIp(model, "10.9.9.9")).toBeUndefined()
  })

  test("a pod without addresses is selected, but no address stands for it", () => {
    const pods = [...PODS, pod("y", "c", "10.0.2.3", { ips: [] })]
    const model = modelOf([np("p", "x", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }] })], pods)
    const rule = model.policies.get("x/p")!.ingress![0]!
    expect(rule.peers === "all" ? [] : rule.peers.pods).toEqual(["y/a", "y/b", "y/c"])
    expect(rule.peers === "all" ? [] : rule.peers.ranges[4].length).toBe(1)
  })
})
