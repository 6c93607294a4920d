/**
 * Hostile input for every plugin: malformed configurations and environments, generated
 * from a seed (the same cases every run; `TSCNI_FUZZ_SEED` picks others), run as a runtime
 * runs the compiled binaries, in a test host with a pod. Every case must answer with one
 * CNI error JSON document on stdout and nothing else there, a code the case allows, a
 * non-zero exit, within a deadline (no hang), and leave host and pod as they were.
 *
 * Only mutations that make the input invalid are generated (a wrong JSON type for a key of
 * known type, an environment variable the spec forbids, a prevResult interface name the
 * kernel would refuse, stdin that is not a config), so that success is a failure of the
 * test, never luck. The cases the issue found are pinned first.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { writeFileSync } from "node:fs"
import { binary, freshNetns, podEnv } from "./harness.ts"
import { freshHost, observe, type TestHost } from "./hostns.ts"

type Json = Record<string, any>

const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

/** mulberry32: a small seeded PRNG, so a failing case is the same case next time. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const SEED = Number(process.env.TSCNI_FUZZ_SEED ?? 20261207)
const CASES_PER_PLUGIN = 30
/** No plugin may take longer than this for any input (a hang is the failure). */
const DEADLINE_MS = 15_000

type KeyType = "string" | "number" | "boolean" | "object" | "array"

interface PluginSpec {
  readonly name: string
  /** a valid config for this plugin in this test host */
  readonly conf: (h: TestHost, pod: string) => Json
  /** keys of known type the mutations may break */
  readonly keys: Readonly<Record<string, KeyType>>
}

const prevResultFor = (pod: string): Json => ({
  cniVersion: "1.0.0",
  interfaces: [{ name: "cni-fz0", mac: "0a:58:0a:01:00:01" }, { name: "vethfz", mac: "0a:58:0a:01:00:02" }, { name: "eth0", mac: "0a:58:0a:01:00:03", sandbox: pod }],
  ips: [{ address: "10.133.0.2/24", gateway: "10.133.0.1", interface: 2 }]
})

const PLUGINS: ReadonlyArray<PluginSpec> = [
  { name: "loopback", conf: () => ({ cniVersion: "1.0.0", name: "fz", type: "loopback" }), keys: {} },
  {
    name: "bridge",
    conf: (h) => ({ cniVersion: "1.0.0", name: "fz", type: "bridge", bridge: "cni-fz0", isGateway: true, ipMasq: true, ipam: { type: "host-local", ranges: [[{ subnet: "10.133.0.0/24" }]], dataDir: h.dir } }),
    keys: { bridge: "string", isGateway: "boolean", isDefaultGateway: "boolean", ipMasq: "boolean", hairpinMode: "boolean", mtu: "number", promiscMode: "boolean", macspoofchk: "boolean", ipam: "object" }
  },
  {
    name: "host-local",
    conf: (h) => ({ cniVersion: "1.0.0", name: "fz", type: "host-local", ipam: { type: "host-local", ranges: [[{ subnet: "10.133.1.0/24" }]], dataDir: h.dir } }),
    keys: { ipam: "object" }
  },
  { name: "static", conf: () => ({ cniVersion: "1.0.0", name: "fz", type: "static", ipam: { type: "static", addresses: [{ address: "10.133.2.5/24" }] } }), keys: { ipam: "object" } },
  {
    name: "portmap",
    conf: (_h, pod) => ({ cniVersion: "1.0.0", name: "fz", type: "portmap", capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ hostPort: 8400, containerPort: 80, protocol: "tcp" }] }, prevResult: prevResultFor(pod) }),
    keys: { snat: "boolean", masqAll: "boolean", markMasqBit: "number", conditionsV4: "array", runtimeConfig: "object", prevResult: "object" }
  },
  {
    name: "bandwidth",
    conf: (_h, pod) => ({ cniVersion: "1.0.0", name: "fz", type: "bandwidth", ingressRate: 1000000, ingressBurst: 100000, prevResult: prevResultFor(pod) }),
    keys: { ingressRate: "number", ingressBurst: "number", egressRate: "number", egressBurst: "number", prevResult: "object" }
  },
  {
    name: "tuning",
    conf: (h, pod) => ({ cniVersion: "1.0.0", name: "fz", type: "tuning", dataDir: `${h.dir}/tuning`, sysctl: { "net.core.somaxconn": "900" }, prevResult: prevResultFor(pod) }),
    keys: { sysctl: "object", mtu: "number", promisc: "boolean", allmulti: "boolean", mac: "string", prevResult: "object" }
  },
  {
    name: "firewall",
    conf: (_h, pod) => ({ cniVersion: "1.0.0", name: "fz", type: "firewall", backend: "", prevResult: prevResultFor(pod) }),
    keys: { ingressPolicy: "string", prevResult: "object" }
  },
  {
    name: "ptp",
    conf: (h) => ({ cniVersion: "1.0.0", name: "fz", type: "ptp", ipMasq: true, mtu: 1400, ipam: { type: "host-local", ranges: [[{ subnet: "10.133.3.0/24" }]], dataDir: h.dir } }),
    keys: { ipMasq: "boolean", ipMasqBackend: "string", mtu: "number", ipam: "object" }
  },
  {
    name: "tscni-net",
    conf: (h) => {
      // the node file the agent would have written: every case gets past "no lease yet"
      writeFileSync(`${h.dir}/node.json`, JSON.stringify({ node: "fz", subnets: ["10.133.4.0/24"], networks: ["10.133.0.0/16"], mtu: 1450, backend: "vxlan" }))
      return { cniVersion: "1.0.0", name: "fz", type: "tscni-net", nodeFile: `${h.dir}/node.json`, dataDir: `${h.dir}/delegates`, delegate: { bridge: "cni-fz0", ipam: { dataDir: h.dir } } }
    },
    keys: { nodeFile: "string", dataDir: "string", delegate: "object" }
  }
]

/** A value of another JSON type than `type` (every key here is checked strictly by its schema). */
const wrongValue = (type: KeyType, pick: <T>(items: ReadonlyArray<T>) => T): unknown => {
  const others: Record<KeyType, ReadonlyArray<unknown>> = {
    string: [7, true, [], { x: 1 }],
    number: ["1", true, [], { n: 1 }, "NaN"],
    boolean: ["yes", 1, [], {}],
    object: ["object", 3, [1, 2], true],
    array: ["a", 4, { 0: "a" }, true]
  }
  return pick(others[type])
}

interface Case {
  readonly label: string
  readonly env: Record<string, string>
  readonly stdin: string
  /** the CNI error codes this input may be answered with */
  readonly codes: ReadonlyArray<number>
}

/** One malformed invocation of `plugin`, from a random operator. */
const generate = (spec: PluginSpec, h: TestHost, pod: string, random: () => number): Case => {
  const pick = <T>(items: ReadonlyArray<T>): T => items[Math.floor(random() * items.length)]!
  const conf = spec.conf(h, pod)
  const env = { ...podEnv("ADD", `fz${Math.floor(random() * 1e6)}`, pod), CNI_ARGS: "IgnoreUnknown=1" }
  const command = pick(["ADD", "CHECK", "DEL"])
  const base = { ...env, CNI_COMMAND: command }
  const stdin = JSON.stringify(command === "CHECK" && conf.prevResult === undefined ? { ...conf, prevResult: prevResultFor(pod) } : conf)
  const keys = Object.keys(spec.keys)
  const operators: Array<() => Case> = [
    () => ({ label: "CNI_COMMAND unknown", env: { ...base, CNI_COMMAND: pick(["ATTACH", "add", "", "DEL ", "VERSION2"]) }, stdin, codes: [4] }),
    () => ({ label: "CNI_CONTAINERID bad", env: { ...base, CNI_CONTAINERID: pick(["-x", "a/b", "a b", "\u00e9", "x;y"]) }, stdin, codes: [4] }),
    () => ({ label: "CNI_IFNAME bad", env: { ...base, CNI_IFNAME: pick(["a234567890123456", "eth/0", "eth 0", ".", "x".repeat(5000)]) }, stdin, codes: [4] }),
    () => ({ label: "CNI_ARGS malformed", env: { ...base, CNI_ARGS: pick(["K=V=W", "IgnoreUnknown=maybe;FOO=bar", "novalue", "=x", "IgnoreUnknown=1;a=b=c"]) }, stdin, codes: [4] }),
    () => ({ label: "CNI_NETNS the plugin's own", env: { ...base, CNI_NETNS: "/proc/self/ns/net" }, stdin, codes: [4] }),
    // (only for plugins that enter the pod's namespace: IPAM and prevResult-only plugins never open it)
    ...(command === "DEL" || !["loopback", "bridge", "tuning", "ptp"].includes(spec.name) ? [] : [() => ({ label: "CNI_NETNS not a namespace", env: { ...base, CNI_NETNS: pick(["/etc/hostname", "/nonexistent/netns", "/proc/1/ns/pid"]) }, stdin, codes: [3] })]),
    () => ({ label: "stdin not a config", env: base, stdin: pick(["", "{", "[]", "null", "\"x\"", "{\"cniVersion\":", "\u0000"]), codes: [6, 7] }),
    () => ({ label: "cniVersion unsupported", env: base, stdin: JSON.stringify({ ...conf, cniVersion: pick(["0.1.0", "9.9.9", "1.0", ""]) }), codes: [1, 7] }),
    () => ({ label: "type or name wrong", env: base, stdin: JSON.stringify({ ...conf, ...pick([{ type: 7 }, { name: "-bad" }, { name: "" }, { name: "a b" }]) }), codes: [7] }),
    ...(keys.length === 0 ? [] : [() => {
      const key = pick(keys)
      const value = wrongValue(spec.keys[key]!, pick)
      return { label: `${key} of a wrong type (${JSON.stringify(value)})`, env: base, stdin: JSON.stringify({ ...conf, [key]: value }), codes: [6, 7] }
    }]),
    ...(conf.prevResult === undefined ? [] : [() => {
      const name = pick(["x".repeat(65_531), "x".repeat(16), "br\u0000x", "eth/0", ""])
      const prevResult = { ...conf.prevResult, interfaces: [...conf.prevResult.interfaces.slice(0, 2), { ...conf.prevResult.interfaces[2], name }] }
      return { label: `prevResult interface name ${JSON.stringify(name.slice(0, 20))}${name.length > 20 ? `… (${name.length} bytes)` : ""}`, env: base, stdin: JSON.stringify({ ...conf, prevResult }), codes: [7] }
    }])
  ]
  return pick(operators)()
}

/** The cases the issue reported, for every plugin they apply to. */
const pinned = (spec: PluginSpec, h: TestHost, pod: string): Array<Case> => {
  const conf = spec.conf(h, pod)
  const env = { ...podEnv("ADD", "fz-pinned", pod), CNI_ARGS: "IgnoreUnknown=1" }
  const cases: Array<Case> = [
    { label: "CNI_ARGS K=V=W", env: { ...env, CNI_ARGS: "K=V=W" }, stdin: JSON.stringify(conf), codes: [4] },
    { label: "CNI_ARGS IgnoreUnknown=maybe;FOO=bar", env: { ...env, CNI_ARGS: "IgnoreUnknown=maybe;FOO=bar" }, stdin: JSON.stringify(conf), codes: [4] },
    { label: "CNI_NETNS=/proc/self/ns/net", env: { ...env, CNI_NETNS: "/proc/self/ns/net" }, stdin: JSON.stringify(conf), codes: [4] }
  ]
  if (conf.prevResult !== undefined) {
    const prevResult = { ...conf.prevResult, interfaces: [...conf.prevResult.interfaces.slice(0, 2), { ...conf.prevResult.interfaces[2], name: "x".repeat(65_531) }] }
    cases.push({ label: "prevResult interface name of 65,531 bytes", env, stdin: JSON.stringify({ ...conf, prevResult }), codes: [7] })
  }
  if (spec.name === "bridge") cases.push({ label: "a NUL in the bridge name", env, stdin: JSON.stringify({ ...conf, bridge: "cni-\u0000fz" }), codes: [7] })
  return cases
}

/** Runs a case with a deadline; returns what a runtime would see. */
const run = (h: TestHost, plugin: string, c: Case) => {
  const started = Date.now()
  const out = Bun.spawnSync(["ip", "netns", "exec", h.name, binary(plugin)], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...c.env },
    stdin: Buffer.from(c.stdin),
    stdout: "pipe",
    stderr: "pipe",
    timeout: DEADLINE_MS,
    // a plugin that hangs may ignore SIGTERM too (the bandwidth case the issue found did)
    killSignal: "SIGKILL"
  })
  return { exitCode: out.exitCode, signal: out.signalCode, stdout: out.stdout.toString(), ms: Date.now() - started }
}

/** What a case got wrong ([] when nothing): one JSON error on stdout, an allowed code, non-zero exit, in time. */
const problems = (c: Case, out: ReturnType<typeof run>): Array<string> => {
  const wrong: Array<string> = []
  if (out.signal !== null && out.signal !== undefined) wrong.push(`killed by ${out.signal} after ${out.ms} ms (a hang)`)
  if (out.exitCode === 0) wrong.push("exit code 0")
  const lines = out.stdout.split("\n").filter((line) => line !== "")
  if (lines.length !== 1) return [...wrong, `stdout has ${lines.length} line(s): ${out.stdout.slice(0, 200)}`]
  let error: Json
  try {
    error = JSON.parse(lines[0]!) as Json
  } catch {
    return [...wrong, `stdout is not JSON: ${lines[0]!.slice(0, 200)}`]
  }
  if (typeof error.msg !== "string" || typeof error.cniVersion !== "string") wrong.push(`not a CNI error: ${lines[0]!.slice(0, 200)}`)
  if (!c.codes.includes(error.code)) wrong.push(`code ${error.code} (${error.msg}), expected ${c.codes.join(" or ")}`)
  return wrong
}

describe("hostile input, every plugin", () => {
  const random = prng(SEED)
  for (const spec of PLUGINS) {
    test(`${spec.name}: ${CASES_PER_PLUGIN} generated malformed invocations and the pinned ones: one JSON error, the right code, exit 1, no hang, nothing changed (seed ${SEED})`, () => {
      const h = freshHost()
      cleanups.push(h.remove)
      const pod = freshNetns()
      cleanups.push(pod.remove)
      const before = { host: observe(h.name), pod: observe(pod.name) }
      const cases = [...pinned(spec, h, pod.path), ...Array.from({ length: CASES_PER_PLUGIN }, () => generate(spec, h, pod.path, random))]
      const failures: Array<string> = []
      for (const c of cases) {
        const out = run(h, spec.name, c)
        const wrong = problems(c, out)
        const after = { host: observe(h.name), pod: observe(pod.name) }
        if (after.host !== before.host || after.pod !== before.pod) wrong.push("the host or the pod changed")
        if (wrong.length > 0) failures.push(`${c.label} [${c.env.CNI_COMMAND}]: ${wrong.join("; ")}`)
      }
      expect(failures).toEqual([])
    }, 300_000)
  }
})

// the binaries must exist (a missing one would make every case "fail" for the wrong reason)
for (const spec of PLUGINS) binary(spec.name)
