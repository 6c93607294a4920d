import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { invocationFaultSweep, invocationRunsNotFailedAtTheirFault } from "@tscni/steps/testing/invocationFaultSweep"
import { handleInvocation } from "@tscni/skel"
import { faultSweep } from "@tscni/steps/testing/faultSweep"
import { attachmentKey } from "@tscni/steps"
import { hostportChains, portmapPipeline, portmapPlugin, portmapTablePrefix } from "../src/index.ts"

type Json = Record<string, any>

const POD = "/var/run/netns/pod"
const PREV = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "cni0", mac: "0a:00:00:00:00:01" }, { name: "veth1", mac: "0a:00:00:00:00:02" }, { name: "eth0", mac: "0a:00:00:00:00:03", sandbox: POD }],
  ips: [{ address: "10.88.0.2/24", gateway: "10.88.0.1", interface: 2 }, { address: "fd88::2/64", gateway: "fd88::1", interface: 2 }]
}
const MAPPINGS = [
  { hostPort: 8080, containerPort: 80, protocol: "tcp" },
  { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "" }
]
const conf = (extra: Json = {}) => ({
  cniVersion: "1.0.0",
  name: "pmnet",
  type: "portmap",
  capabilities: { portMappings: true },
  runtimeConfig: { portMappings: MAPPINGS },
  prevResult: PREV,
  ...extra
})
/** Another pod of the network: its own address and host ports (a host port is one pod's). */
const otherPod = (n: number, extra: Json = {}) => conf({
  prevResult: { ...PREV, ips: [{ address: `10.88.0.${2 + n}/24`, gateway: "10.88.0.1", interface: 2 }, { address: `fd88::${2 + n}/64`, gateway: "fd88::1", interface: 2 }] },
  runtimeConfig: { portMappings: MAPPINGS.map((m) => ({ ...m, hostPort: m.hostPort + n })) },
  ...extra
})
const env = (command: string, id = "c1") => ({ CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: POD, CNI_IFNAME: "eth0" })

const invoke = (environment: Record<string, string>, c: Json) =>
  handleInvocation(portmapPlugin, { env: environment, stdin: Effect.succeed(JSON.stringify(c)) }).pipe(
    Effect.map((o) => ({ ...o, json: o.stdout === "" ? undefined : (JSON.parse(o.stdout) as Json) }))
  )

/** A host with the pod network's bridge (so 10.88.0.0/24 is routed via cni0). */
const hostWithBridge = Effect.gen(function*() {
  const backend = yield* Backend
  yield* backend.createNetns("pod")
  yield* backend.createLink({ netns: HOST_NETNS, name: "cni0", kind: "bridge" })
  yield* backend.setLink(HOST_NETNS, "cni0", { up: true })
  yield* backend.addAddress(HOST_NETNS, "cni0", "10.88.0.1/24")
})

/** Every element of the network's hostPort tables, as `set { key : value }` lines (and owners). */
const pmElements = Effect.gen(function*() {
  const backend = yield* Backend
  const tables = yield* backend.listNftTables(HOST_NETNS, portmapTablePrefix("pmnet"))
  const elements = []
  for (const table of tables) elements.push(...(yield* backend.listNftElements(HOST_NETNS, table)))
  return elements
})
const pmLines = Effect.map(pmElements, (elements) => elements.map((e) => `${e.set} { ${e.key}${e.value === undefined ? "" : ` : ${e.value}`} }`).sort())
const pmOwners = Effect.map(pmElements, (elements) => new Set(elements.map((e) => e.comment)).size)
const pmRules = Effect.gen(function*() {
  const backend = yield* Backend
  const [table] = yield* backend.listNftTables(HOST_NETNS, portmapTablePrefix("pmnet"))
  const rules: Array<string> = []
  for (const chain of ["prerouting", "output", "postrouting"]) {
    const listed = yield* Effect.orElseSucceed(backend.listNftChainRules(HOST_NETNS, table!, chain), () => [])
    rules.push(...listed.map((rule) => `${chain}: ${rule}`))
  }
  return rules
})

const onMock = <A, E>(body: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(body.pipe(Effect.provide(MockBackend.layer)))

describe("portmap on the mock kernel", () => {
  test("containerd's portMappings (Go field names: HostPort, ContainerPort, Protocol, HostIP) map exactly as the conventions' spelling", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      const goNamed = MAPPINGS.map((m) => ({ HostPort: m.hostPort, ContainerPort: m.containerPort, Protocol: m.protocol, HostIP: m.hostIP ?? "" }))
      expect((yield* invoke(env("ADD", "c1"), conf({ runtimeConfig: { portMappings: goNamed } }))).exitCode).toBe(0)
      const fromGo = yield* pmLines
      expect(fromGo.length).toBeGreaterThan(0)
      const check = yield* invoke(env("CHECK", "c1"), conf({ runtimeConfig: { portMappings: goNamed } }))
      expect([check.exitCode, check.stdout]).toEqual([0, ""])
      expect((yield* invoke(env("DEL", "c1"), conf({ runtimeConfig: { portMappings: goNamed } }))).exitCode).toBe(0)
      expect(yield* pmLines).toEqual([])
      expect((yield* invoke(env("ADD", "c1"), conf())).exitCode).toBe(0)
      expect(yield* pmLines).toEqual(fromGo)
    })))

  test("no mappings: prevResult back at once, not one kernel call", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const out = yield* invoke(env("ADD"), conf({ runtimeConfig: {} }))
      expect(out.exitCode).toBe(0)
      expect(out.json).toEqual(PREV)
      expect(mock.calls()).toEqual([])
    })))

  test("ADD installs DNAT for every local address and the host, hairpin and localhost masquerade, route_localnet", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      const out = yield* invoke(env("ADD"), conf())
      expect(out.exitCode).toBe(0)
      expect(out.json).toEqual(PREV)
      expect(yield* pmLines).toEqual([
        "dnat4 { tcp . 8080 : 10.88.0.2 . 80 }",
        "dnat4 { udp . 5353 : 10.88.0.2 . 53 }",
        "dnat6 { tcp . 8080 : fd88::2 . 80 }",
        "dnat6 { udp . 5353 : fd88::2 . 53 }",
        "hairpin4 { 10.88.0.2 . 10.88.0.2 . tcp . 80 }",
        "hairpin4 { 10.88.0.2 . 10.88.0.2 . udp . 53 }",
        "hairpin6 { fd88::2 . fd88::2 . tcp . 80 }",
        "hairpin6 { fd88::2 . fd88::2 . udp . 53 }",
        "local4 { 10.88.0.2 . tcp . 80 }",
        "local4 { 10.88.0.2 . udp . 53 }"
      ])
      // the network's rules: DNAT through the maps from elsewhere and from the host, hairpin and localhost masquerade
      expect(yield* pmRules).toEqual([
        "prerouting: dnat ip to ip daddr . meta l4proto . th dport map @hostdnat4",
        "prerouting: fib daddr type local dnat ip to meta l4proto . th dport map @dnat4",
        "prerouting: dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostdnat6",
        "prerouting: fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6",
        "output: dnat ip to ip daddr . meta l4proto . th dport map @hostdnat4",
        "output: fib daddr type local dnat ip to meta l4proto . th dport map @dnat4",
        "output: dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostdnat6",
        "output: fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6",
        "postrouting: ip saddr . ip daddr . meta l4proto . th dport @hairpin4 masquerade",
        "postrouting: ip saddr 127.0.0.0/8 ip daddr . meta l4proto . th dport @local4 masquerade",
        "postrouting: ip6 saddr . ip6 daddr . meta l4proto . th dport @hairpin6 masquerade"
      ])
      expect(yield* backend.readSysctl(HOST_NETNS, "net.ipv4.conf.cni0.route_localnet")).toBe("1")
    })))

  test("hostIP limits a mapping to that address and family; masqAll masquerades all DNATed traffic", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      const mappings = [{ hostPort: 8443, containerPort: 443, protocol: "tcp", hostIP: "192.0.2.10" }]
      const out = yield* invoke(env("ADD"), conf({ runtimeConfig: { portMappings: mappings }, masqAll: true }))
      expect(out.exitCode).toBe(0)
      expect(yield* pmLines).toEqual(["hostdnat4 { 192.0.2.10 . tcp . 8443 : 10.88.0.2 . 443 }", "masq4 { 10.88.0.2 . tcp . 443 }"])
      expect((yield* pmRules).filter((rule) => rule.startsWith("postrouting"))).toEqual([
        "postrouting: ct status dnat ip daddr . meta l4proto . th dport @masq4 masquerade",
        "postrouting: ct status dnat ip6 daddr . meta l4proto . th dport @masq6 masquerade"
      ])
    })))

  test("without localhost access (snat false, or masqAll) ADD does not look up the route to the pod; with it, one lookup per address and never a listing", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      yield* hostWithBridge
      const mappings = [{ hostPort: 8443, containerPort: 443, protocol: "tcp" }]
      const operations = (before: number) => mock.calls().slice(before).map((call) => call.operation)
      for (const [id, extra] of [["c1", { snat: false }], ["c2", { masqAll: true }]] as const) {
        const before = mock.calls().length
        expect((yield* invoke(env("ADD", id), conf({ runtimeConfig: { portMappings: mappings }, ...extra }))).exitCode).toBe(0)
        expect(operations(before)).not.toContain("lookupRoute")
      }
      // and with it, the route to the pod's IPv4 address is asked for, once: cost constant in the host's routes and links
      const before = mock.calls().length
      expect((yield* invoke(env("ADD", "c3"), conf({ runtimeConfig: { portMappings: mappings } }))).exitCode).toBe(0)
      expect(operations(before).filter((operation) => operation === "lookupRoute")).toHaveLength(1)
      expect(operations(before).filter((operation) => operation === "listRoutes" || operation === "listLinks")).toEqual([])
      // route_localnet went on the bridge the route names
      expect(yield* Backend.use((backend) => backend.readSysctl(HOST_NETNS, "net.ipv4.conf.cni0.route_localnet"))).toBe("1")
    })))

  test("hostIP 0.0.0.0 or :: means every local address of that family", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      const mappings = [
        { hostPort: 8090, containerPort: 80, protocol: "tcp", hostIP: "0.0.0.0" },
        { hostPort: 8091, containerPort: 80, protocol: "tcp", hostIP: "::" }
      ]
      expect((yield* invoke(env("ADD"), conf({ runtimeConfig: { portMappings: mappings } }))).exitCode).toBe(0)
      expect((yield* pmLines).filter((line) => line.includes("dnat"))).toEqual([
        "dnat4 { tcp . 8090 : 10.88.0.2 . 80 }",
        "dnat6 { tcp . 8091 : fd88::2 . 80 }"
      ])
    })))

  test("every fault during ADD leaves the kernel as it was", async () => {
    const report = await Effect.runPromise(faultSweep(portmapPipeline, {
      settings: { network: "pmnet", mappings: [{ hostPort: 8080, containerPort: 80, protocol: "udp", hostIP: undefined }], mappingsKnown: true, snat: true, masqAll: false, conditionsV4: [], conditionsV6: [], backend: "nftables", markMasqBit: 13, externalSetMarkChain: undefined },
      podIps: ["10.88.0.2"],
      podAddresses: ["10.88.0.2/24"],
      owner: "pm:test:1",
      chains: hostportChains("00000000000a"),
      localnetLinks: ["cni0"]
    }, { setup: hostWithBridge }))
    expect(report.runs.length).toBeGreaterThan(2)
    for (const run of report.runs) expect({ k: run.k, diff: run.diff }).toEqual({ k: run.k, diff: [] })
    // route_localnet, set last, is never put back: other pods routed through cni0 rely on it
    expect(report.clean.undoDiff).toEqual(["host: ~ sysctl net.ipv4.conf.cni0.route_localnet: 0 → 1"])
  })

  test("DEL removes exactly the pod's rules, twice, without prevResult or mappings", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      yield* hostWithBridge
      expect((yield* invoke(env("ADD", "c2"), otherPod(1))).exitCode).toBe(0)
      const before = mock.snapshot()
      expect((yield* invoke(env("ADD", "c1"), conf())).exitCode).toBe(0)
      for (let i = 0; i < 2; i++) {
        const del = yield* invoke(env("DEL", "c1"), conf({ prevResult: undefined, runtimeConfig: {} }))
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect(yield* pmOwners).toBe(1)
      // and by key, with prevResult and mappings
      expect((yield* invoke(env("DEL", "c2"), otherPod(1))).exitCode).toBe(0)
      expect(yield* pmElements).toEqual([])
    })))

  test("a hostPort another pod of the network holds is refused, naming it; that pod's DEL leaves the other's mapping", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      yield* hostWithBridge
      expect((yield* invoke(env("ADD", "c1"), conf())).exitCode).toBe(0)
      const before = mock.snapshot()
      const second = yield* invoke(env("ADD", "c2"), conf({ prevResult: { ...PREV, ips: [{ address: "10.88.0.3/24", interface: 2 }] } }))
      expect([second.exitCode, second.json?.msg]).toEqual([1, expect.stringContaining("dnat4 { tcp . 8080 }")])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      const del = yield* invoke(env("DEL", "c2"), conf({ prevResult: { ...PREV, ips: [{ address: "10.88.0.3/24", interface: 2 }] } }))
      expect(del.exitCode).toBe(0)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    })))

  test("CHECK passes after ADD and fails when the rules were removed by hand", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      yield* invoke(env("ADD"), conf())
      expect((yield* invoke(env("CHECK"), conf())).exitCode).toBe(0)
      const [table] = yield* backend.listNftTables(HOST_NETNS, portmapTablePrefix("pmnet"))
      yield* backend.deleteNftElements(HOST_NETNS, table!, [{ set: "dnat6", key: "udp . 5353" }])
      const broken = yield* invoke(env("CHECK"), conf())
      expect([broken.exitCode, broken.json!.msg]).toEqual([1, expect.stringContaining("has no dnat6 { udp . 5353 }")])
    })))

  test("GC removes the rules of attachments that are no longer valid", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      yield* invoke(env("ADD", "keep"), conf())
      yield* invoke(env("ADD", "gone"), otherPod(1))
      const countOf = pmOwners
      expect(yield* countOf).toBe(2)
      const gc = yield* invoke({ CNI_COMMAND: "GC" }, {
        ...conf({ cniVersion: "1.1.0", prevResult: undefined }),
        "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }]
      })
      expect(gc.exitCode).toBe(0)
      expect(yield* countOf).toBe(1)
    })))

  test("bad mappings and backend options are code 7 naming the field; nothing changes", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      yield* hostWithBridge
      const before = mock.snapshot()
      const cases: Array<[Json, number, string]> = [
        [{ runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } }, 7, "hostPort"],
        [{ runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 70000 }] } }, 7, "containerPort"],
        [{ runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, protocol: "icmp" }] } }, 7, "protocol"],
        [{ runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: "nope" }] } }, 7, "hostIP"],
        [{ markMasqBit: 32 }, 7, "markMasqBit"],
        [{ backend: "nftables", externalSetMarkChain: "KUBE-MARK-MASQ" }, 7, "externalSetMarkChain"],
        [{ conditionsV4: ["ip saddr 1.2.3.4; flush ruleset"] }, 7, "conditionsV4"],
        [{ prevResult: undefined }, 7, "prevResult"]
      ]
      for (const [extra, code, field] of cases) {
        const out = yield* invoke(env("ADD"), conf(extra))
        expect({ field, code: out.json?.code, msg: out.json?.msg.includes(field) }).toEqual({ field, code, msg: true })
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    })))
})

describe("portmap with backend iptables on the mock kernel", () => {
  const iptables = (extra: Json = {}) => conf({ backend: "iptables", ...extra })
  const chains = (id: string) => hostportChains(attachmentKey(id, "eth0"))
  const HP = chains("c1").dnat
  const HPM = chains("c1").masq
  const rulesOf = (family: 4 | 6) =>
    Effect.map(Backend.use((backend) => backend.listIptablesRules(HOST_NETNS, { family, table: "nat" })), (listing) =>
      listing.rules.map((r) => `${r.chain}: ${r.args.join(" ")}`))

  test("ADD: DNAT for local destinations from PREROUTING and OUTPUT, hairpin and localhost marked with bit 13, marked connections masqueraded", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      const out = yield* invoke(env("ADD"), iptables())
      expect(out.exitCode).toBe(0)
      expect(out.json).toEqual(PREV)
      expect(yield* rulesOf(4)).toEqual([
        "PREROUTING: -m addrtype --dst-type LOCAL -j TSCNI-HOSTPORTS",
        "OUTPUT: -m addrtype --dst-type LOCAL -j TSCNI-HOSTPORTS",
        "POSTROUTING: -j TSCNI-HP-MASQ",
        `TSCNI-HOSTPORTS: -j ${HP}`,
        `${HP}: -p tcp --dport 8080 -s 10.88.0.0/24 -j MARK --set-xmark 0x2000/0x2000`,
        `${HP}: -p tcp --dport 8080 -s 127.0.0.0/8 -j MARK --set-xmark 0x2000/0x2000`,
        `${HP}: -p tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80`,
        `${HP}: -p udp --dport 5353 -s 10.88.0.0/24 -j MARK --set-xmark 0x2000/0x2000`,
        `${HP}: -p udp --dport 5353 -s 127.0.0.0/8 -j MARK --set-xmark 0x2000/0x2000`,
        `${HP}: -p udp --dport 5353 -j DNAT --to-destination 10.88.0.2:53`,
        `TSCNI-HP-MASQ: -j ${HPM}`,
        `${HPM}: -d 10.88.0.2/32 -m mark --mark 0x2000/0x2000 -j MASQUERADE`
      ])
      expect(yield* rulesOf(6)).toContain(`${HP}: -p tcp --dport 8080 -j DNAT --to-destination [fd88::2]:80`)
      expect((yield* rulesOf(6)).filter((rule) => rule.includes("127.0.0.0"))).toEqual([])
      expect(yield* backend.listNftTables(HOST_NETNS, "tscni-")).toEqual([])
      expect(yield* backend.readSysctl(HOST_NETNS, "net.ipv4.conf.cni0.route_localnet")).toBe("1")
    })))

  test("markMasqBit, hostIP, conditions (iptables arguments) and masqAll; a newer pod's rules come first", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      const mappings = [{ hostPort: 8443, containerPort: 443, protocol: "tcp", hostIP: "192.0.2.10" }]
      const first = yield* invoke(env("ADD", "c1"), iptables({ runtimeConfig: { portMappings: mappings }, markMasqBit: 20, conditionsV4: ["!", "-s 198.51.100.0/24"], masqAll: true }))
      expect(first.exitCode).toBe(0)
      expect((yield* rulesOf(4)).filter((rule) => rule.startsWith(`${HP}:`) || rule.startsWith(`${HPM}:`))).toEqual([
        `${HP}: -d 192.0.2.10 -p tcp --dport 8443 ! -s 198.51.100.0/24 -s 0.0.0.0/0 -j MARK --set-xmark 0x100000/0x100000`,
        `${HP}: -d 192.0.2.10 -p tcp --dport 8443 ! -s 198.51.100.0/24 -j DNAT --to-destination 10.88.0.2:443`,
        `${HPM}: -d 10.88.0.2/32 -m mark --mark 0x100000/0x100000 -j MASQUERADE`
      ])
      expect(yield* rulesOf(6)).toEqual([])
      const second = yield* invoke(env("ADD", "c2"), iptables({ runtimeConfig: { portMappings: [{ hostPort: 8443, containerPort: 443 }] }, snat: false }))
      expect(second.exitCode).toBe(0)
      // the newer pod's chain is entered first
      expect((yield* rulesOf(4)).filter((rule) => rule.startsWith("TSCNI-HOSTPORTS:"))).toEqual([
        `TSCNI-HOSTPORTS: -j ${chains("c2").dnat}`,
        `TSCNI-HOSTPORTS: -j ${HP}`
      ])
    })))

  test("externalSetMarkChain: marking jumps there and there is no masquerade chain of ours", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      // stands for KUBE-MARK-MASQ (the backend only creates TSCNI- chains), in both families as kube-proxy has it
      for (const family of [4, 6] as const) {
        yield* backend.addIptablesRules(HOST_NETNS, {
          family,
          table: "nat",
          chains: [{ name: "TSCNI-TEST-MARK" }],
          rules: [{ chain: "TSCNI-TEST-MARK", args: ["-j", "MARK", "--set-xmark", "0x4000/0x4000"] }],
          comment: "kube"
        })
      }
      const mappings = [{ hostPort: 8080, containerPort: 80 }]
      const out = yield* invoke(env("ADD"), conf({ runtimeConfig: { portMappings: mappings }, externalSetMarkChain: "TSCNI-TEST-MARK" }))
      expect([out.exitCode, out.stdout]).toEqual([0, expect.any(String)])
      const rules = yield* rulesOf(4)
      expect(rules).toContain(`${HP}: -p tcp --dport 8080 -s 10.88.0.0/24 -j TSCNI-TEST-MARK`)
      expect(rules.filter((rule) => rule.includes("TSCNI-HP-MASQ") || rule.includes(HPM))).toEqual([])
      // a missing external chain: NotFound at ADD, nothing left
      const mock = yield* MockBackend.MockControlService
      const before = mock.snapshot()
      const missing = yield* invoke(env("ADD", "c9"), conf({ runtimeConfig: { portMappings: mappings }, externalSetMarkChain: "KUBE-MARK-MASQ" }))
      expect(missing.exitCode).toBe(1)
      expect(missing.json!.msg).toContain("KUBE-MARK-MASQ")
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    })))

  test("every fault during ADD leaves the kernel as it was (both families)", async () => {
    for (const snat of [true, false]) {
      const report = await Effect.runPromise(faultSweep(portmapPipeline, {
        settings: {
          network: "pmnet",
          mappings: [{ hostPort: 8080, containerPort: 80, protocol: "udp", hostIP: undefined }, { hostPort: 8443, containerPort: 443, protocol: "tcp", hostIP: undefined }],
          mappingsKnown: true,
          snat,
          masqAll: false,
          conditionsV4: [],
          conditionsV6: [],
          backend: "iptables",
          markMasqBit: 13,
          externalSetMarkChain: undefined
        },
        podIps: ["10.88.0.2", "fd88::2"],
        podAddresses: ["10.88.0.2/24", "fd88::2/64"],
        owner: "pm:test:1",
        chains: hostportChains("00000000000a"),
        localnetLinks: ["cni0"]
      }, { setup: hostWithBridge }))
      expect(report.runs.length).toBeGreaterThan(2)
      expect(report.runs.map((run) => run.faultedOperation)).toContain("addIptablesPodChains")
      for (const run of report.runs) expect({ k: run.k, diff: run.diff }).toEqual({ k: run.k, diff: [] })
      expect(report.clean.applied.some((line) => line.includes("iptables rule 6 nat"))).toBe(true)
      expect(report.clean.undoDiff.filter((line) => !line.includes("route_localnet"))).toEqual([])
    }
  })

  for (const [backend, config] of [["iptables", iptables()], ["nftables", conf({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "udp" }] } })]] as const) {
    test(`a fault at every Backend call of the plugin's ADD fails it at that fault and leaves the kernel as it was: ${backend}`, async () => {
      const report = await Effect.runPromise(invocationFaultSweep({
        world: () => ({ layer: MockBackend.layer }),
        setup: hostWithBridge,
        invoke: () => invoke(env("ADD"), config)
      }))
      // every call of ADD matters, the conntrack flush for UDP included: none may fail silently
      expect(invocationRunsNotFailedAtTheirFault(report)).toEqual([])
      expect(report.runs.map((run) => run.operation)).toContain(backend === "iptables" ? "addIptablesPodChains" : "createNftTable")
      expect(report.runs.map((run) => run.operation)).toContain("deleteConntrack")
      expect(report.clean.output.exitCode).toBe(0)
    })
  }

  test("DEL removes exactly the pod's chains, twice, without prevResult or mappings; the shared chains stay after the last", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      yield* hostWithBridge
      const empty = mock.snapshot()
      expect((yield* invoke(env("ADD", "c2"), iptables())).exitCode).toBe(0)
      const before = mock.snapshot()
      expect((yield* invoke(env("ADD", "c1"), iptables())).exitCode).toBe(0)
      for (let i = 0; i < 2; i++) {
        const del = yield* invoke(env("DEL", "c1"), iptables({ prevResult: undefined, runtimeConfig: {} }))
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect((yield* invoke(env("DEL", "c2"), iptables())).exitCode).toBe(0)
      const shared = [4, 6].flatMap((family) => [
        `host: + iptables chain ${family} nat TSCNI-HOSTPORTS`,
        `host: + iptables chain ${family} nat TSCNI-HP-MASQ`,
        `host: + iptables rule ${family} nat OUTPUT "-m addrtype --dst-type LOCAL -j TSCNI-HOSTPORTS" comment "tscni"`,
        `host: + iptables rule ${family} nat POSTROUTING "-j TSCNI-HP-MASQ" comment "tscni"`,
        `host: + iptables rule ${family} nat PREROUTING "-m addrtype --dst-type LOCAL -j TSCNI-HOSTPORTS" comment "tscni"`
      ])
      expect(mock.diff(empty, mock.snapshot()).filter((line) => !line.includes("route_localnet")).sort()).toEqual(shared.sort())
    })))

  test("CHECK passes after ADD and fails when a rule or a jump was removed by hand", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      yield* invoke(env("ADD"), iptables())
      expect((yield* invoke(env("CHECK"), iptables())).exitCode).toBe(0)
      const owner = (yield* backend.listIptablesChains(HOST_NETNS, { family: 6, table: "nat", chains: ["TSCNI-HOSTPORTS"] })).rules[0]!.comment
      yield* backend.deleteIptablesPodChains(HOST_NETNS, { family: 6, table: "nat", comment: owner, chains: [{ name: HP, entry: "TSCNI-HOSTPORTS" }] })
      const broken = yield* invoke(env("CHECK"), iptables())
      expect([broken.exitCode, broken.json!.msg]).toEqual([1, expect.stringContaining("IPv6")])
    })))

  test("GC removes the rules of attachments that are no longer valid, in both families", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      yield* invoke(env("ADD", "keep"), iptables())
      yield* invoke(env("ADD", "gone"), otherPod(1, { backend: "iptables" }))
      const owners = (family: 4 | 6) =>
        Effect.map(Backend.use((backend) => backend.listIptablesRules(HOST_NETNS, { family, table: "nat" })), (listing) =>
          new Set(listing.rules.map((r) => r.comment).filter((c) => c !== "tscni" && c !== "")).size)
      expect([yield* owners(4), yield* owners(6)]).toEqual([2, 2])
      const gc = yield* invoke({ CNI_COMMAND: "GC" }, {
        ...iptables({ cniVersion: "1.1.0", prevResult: undefined }),
        "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }]
      })
      expect(gc.exitCode).toBe(0)
      expect([yield* owners(4), yield* owners(6)]).toEqual([1, 1])
    })))

  test("the backend follows the reference: iptables-style conditions or externalSetMarkChain choose iptables; mixing is code 7", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      const chosen = yield* invoke(env("ADD"), conf({ conditionsV4: ["-s", "198.51.100.0/24"] }))
      expect(chosen.exitCode).toBe(0)
      expect((yield* rulesOf(4)).length).toBeGreaterThan(0)
      expect(yield* backend.listNftTables(HOST_NETNS, "tscni-")).toEqual([])
      const cases: Array<[Json, string]> = [
        [{ backend: "iptables", conditionsV4: ["ip saddr 198.51.100.0/24"] }, "conditionsV4"],
        [{ backend: "nftables", conditionsV6: ["-s", "2001:db8::/32"] }, "conditionsV6"],
        [{ markMasqBit: 14, externalSetMarkChain: "KUBE-MARK-MASQ" }, "externalSetMarkChain"],
        [{ backend: "iptables", conditionsV4: ["-m comment --comment x"] }, "conditionsV4"],
        [{ backend: "iptables", markMasqBit: -1 }, "markMasqBit"]
      ]
      for (const [extra, field] of cases) {
        const out = yield* invoke(env("ADD", "c5"), conf(extra))
        expect({ field, code: out.json?.code, msg: out.json?.msg.includes(field) }).toEqual({ field, code: 7, msg: true })
      }
    })))
})
