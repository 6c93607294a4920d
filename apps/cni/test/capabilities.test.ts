import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import {
  ANNOTATION_BURST,
  bandwidthFromAnnotations,
  buildPluginConfig,
  capabilityArgs,
  formatCniArgs,
  parseCniArgs,
  parseQuantity,
  POD_ANNOTATIONS_CAPABILITY,
  runtimeConfigFor
} from "../src/capabilities.ts"

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)
const fail = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Effect.flip(effect))

describe("Kubernetes quantities", () => {
  const table: ReadonlyArray<readonly [string, number | undefined]> = [
    ["1M", 1_000_000],
    ["10Mi", 10 * 1024 * 1024],
    ["500k", 500_000],
    ["1.5M", 1_500_000],
    ["1.1M", 1_100_000],
    ["2G", 2_000_000_000],
    ["1Ki", 1024],
    ["1e6", 1_000_000],
    ["1500", 1500],
    ["100m", 1],
    ["1 M", undefined],
    ["1MB", undefined],
    ["-1M", undefined],
    ["", undefined]
  ]
  for (const [text, expected] of table) {
    test(`${JSON.stringify(text)} → ${expected}`, () => expect(parseQuantity(text)).toBe(expected))
  }
})

describe("annotations → bandwidth", () => {
  test("rates in bits/s, burst MaxUint32 bits, as containerd builds them", async () => {
    expect(
      await run(bandwidthFromAnnotations({ "kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "10Mi" }))
    ).toEqual({ ingressRate: 1_000_000, ingressBurst: ANNOTATION_BURST, egressRate: 10_485_760, egressBurst: 4294967295 })
    expect(await run(bandwidthFromAnnotations({ "kubernetes.io/egress-bandwidth": "500k" }))).toEqual({
      egressRate: 500_000,
      egressBurst: ANNOTATION_BURST
    })
    expect(await run(bandwidthFromAnnotations({ other: "1" }))).toBeUndefined()
  })

  test("out-of-range and malformed values are refused, naming the annotation", async () => {
    expect((await fail(bandwidthFromAnnotations({ "kubernetes.io/ingress-bandwidth": "10" }))).msg).toContain("unreasonably small")
    expect((await fail(bandwidthFromAnnotations({ "kubernetes.io/ingress-bandwidth": "2E" }))).msg).toContain("unreasonably large")
    const bad = await fail(bandwidthFromAnnotations({ "kubernetes.io/egress-bandwidth": "fast" }))
    expect(bad.code).toBe(7)
    expect(bad.msg).toContain("kubernetes.io/egress-bandwidth")
  })
})

describe("capability args", () => {
  test("--cap values are JSON, or plain strings when they are not JSON", async () => {
    const args = await run(capabilityArgs(['portMappings=[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]', "mac=0a:58:0a:01:00:02", "ips=[\"10.1.0.5/24\"]"], []))
    expect(args).toEqual({
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
      mac: "0a:58:0a:01:00:02",
      ips: ["10.1.0.5/24"]
    })
  })

  test("annotations give bandwidth and the pod-annotations capability", async () => {
    const args = await run(capabilityArgs([], ["kubernetes.io/ingress-bandwidth=1M", "team=a=b"]))
    expect(args.bandwidth).toEqual({ ingressRate: 1_000_000, ingressBurst: ANNOTATION_BURST })
    expect(args[POD_ANNOTATIONS_CAPABILITY]).toEqual({ "kubernetes.io/ingress-bandwidth": "1M", team: "a=b" })
  })

  test("bandwidth both as --cap and as annotations is refused; malformed flags too", async () => {
    expect((await fail(capabilityArgs(["bandwidth={}"], ["kubernetes.io/egress-bandwidth=1M"]))).msg).toContain("both")
    expect((await fail(capabilityArgs(["noequals"], []))).code).toBe(7)
    expect((await fail(capabilityArgs([], ["=x"]))).msg).toContain("--annotation")
  })

  test("runtimeConfig holds only capabilities the plugin declares true and the user supplied", () => {
    const plugin = { type: "portmap", capabilities: { portMappings: true, bandwidth: false, ips: true } }
    const args = { portMappings: [1], bandwidth: { ingressRate: 1 }, mac: "x" }
    expect(runtimeConfigFor(plugin, args)).toEqual({ portMappings: [1] })
    expect(runtimeConfigFor({ type: "x" }, args)).toBeUndefined()
    expect(runtimeConfigFor(plugin, {})).toBeUndefined()
  })

  test("the injected config: name, cniVersion, prevResult, runtimeConfig replacing the file's", () => {
    const plugin = { type: "bw", name: "wrong", cniVersion: "0.1.0", capabilities: { bandwidth: true }, runtimeConfig: { old: 1 }, own: "kept" }
    const config = buildPluginConfig(plugin, {
      name: "net",
      cniVersion: "1.0.0",
      prevResult: { cniVersion: "1.0.0" },
      capabilityArgs: { bandwidth: { egressRate: 1000 } }
    })
    expect(config).toEqual({
      type: "bw",
      name: "net",
      cniVersion: "1.0.0",
      capabilities: { bandwidth: true },
      runtimeConfig: { bandwidth: { egressRate: 1000 } },
      own: "kept",
      prevResult: { cniVersion: "1.0.0" }
    })
    // nothing supplied: the file's runtimeConfig stays, no prevResult key on a first ADD
    expect(buildPluginConfig(plugin, { name: "net", cniVersion: "1.0.0", capabilityArgs: {} })).toEqual({
      ...plugin,
      name: "net",
      cniVersion: "1.0.0"
    })
  })

  test("CNI_ARGS round trip", async () => {
    const pairs = await run(parseCniArgs("IgnoreUnknown=1;K8S_POD_NAME=web;;IP=10.1.0.9"))
    expect(pairs).toEqual([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"], ["IP", "10.1.0.9"]])
    expect(formatCniArgs(pairs)).toBe("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.0.9")
    expect((await fail(parseCniArgs("A=1;oops"))).msg).toContain("--args")
  })
})
