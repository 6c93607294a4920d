import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { invocationFaultSweep, invocationRunsNotFailedAtTheirFault } from "@tscni/steps/testing/invocationFaultSweep"
import { handleInvocation } from "@tscni/skel"
import { faultSweep } from "@tscni/steps/testing/faultSweep"
import { PORTMAP_TABLE, portmapPipeline, portmapPlugin } from "../src/index.ts"

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

const onMock = <A, E>(body: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(body.pipe(Effect.provide(MockBackend.layer)))

describe("portmap on the mock kernel", () => {
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
      const rules = yield* backend.listFilterRules(HOST_NETNS, PORTMAP_TABLE)
      const text = rules.map((r) => `${r.family} ${r.chain}: ${r.rule}`)
      expect(text).toEqual(expect.arrayContaining([
        "ip prerouting: fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80",
        "ip output: fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80",
        "ip postrouting: ip saddr 10.88.0.2 ip daddr 10.88.0.2 tcp dport 80 masquerade",
        "ip postrouting: ip saddr 127.0.0.0/8 ip daddr 10.88.0.2 tcp dport 80 masquerade",
        "ip prerouting: fib daddr type local udp dport 5353 dnat to 10.88.0.2:53",
        "ip6 prerouting: fib daddr type local tcp dport 8080 dnat to [fd88::2]:80",
        "ip6 postrouting: ip6 saddr fd88::2 ip6 daddr fd88::2 tcp dport 80 masquerade"
      ]))
      expect(text.filter((t) => t.startsWith("ip6") && t.includes("127.0.0.0"))).toEqual([])
      expect(yield* backend.readSysctl(HOST_NETNS, "net.ipv4.conf.cni0.route_localnet")).toBe("1")
    })))

  test("hostIP limits a mapping to that address and family; masqAll masquerades all DNATed traffic", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      const mappings = [{ hostPort: 8443, containerPort: 443, protocol: "tcp", hostIP: "192.0.2.10" }]
      const out = yield* invoke(env("ADD"), conf({ runtimeConfig: { portMappings: mappings }, masqAll: true }))
      expect(out.exitCode).toBe(0)
      const text = (yield* backend.listFilterRules(HOST_NETNS, PORTMAP_TABLE)).map((r) => `${r.family} ${r.chain}: ${r.rule}`)
      expect(text.sort()).toEqual([
        "ip output: ip daddr 192.0.2.10 tcp dport 8443 dnat to 10.88.0.2:443",
        "ip postrouting: ct status dnat ip daddr 10.88.0.2 tcp dport 443 masquerade",
        "ip prerouting: ip daddr 192.0.2.10 tcp dport 8443 dnat to 10.88.0.2:443"
      ])
    })))

  test("without localhost access (snat false, or masqAll) ADD does not list the host's routes", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      yield* hostWithBridge
      const mappings = [{ hostPort: 8443, containerPort: 443, protocol: "tcp" }]
      for (const [id, extra] of [["c1", { snat: false }], ["c2", { masqAll: true }]] as const) {
        const before = mock.calls().length
        expect((yield* invoke(env("ADD", id), conf({ runtimeConfig: { portMappings: mappings }, ...extra }))).exitCode).toBe(0)
        expect(mock.calls().slice(before).map((call) => call.operation)).not.toContain("listRoutes")
      }
      // and with it, it does
      const before = mock.calls().length
      expect((yield* invoke(env("ADD", "c3"), conf({ runtimeConfig: { portMappings: mappings } }))).exitCode).toBe(0)
      expect(mock.calls().slice(before).map((call) => call.operation)).toContain("listRoutes")
    })))

  test("hostIP 0.0.0.0 or :: means every local address of that family", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      const mappings = [
        { hostPort: 8090, containerPort: 80, protocol: "tcp", hostIP: "0.0.0.0" },
        { hostPort: 8091, containerPort: 80, protocol: "tcp", hostIP: "::" }
      ]
      expect((yield* invoke(env("ADD"), conf({ runtimeConfig: { portMappings: mappings } }))).exitCode).toBe(0)
      const dnat = (yield* backend.listFilterRules(HOST_NETNS, PORTMAP_TABLE))
        .filter((r) => r.chain === "prerouting")
        .map((r) => `${r.family} ${r.rule}`)
      expect(dnat.sort()).toEqual([
        "ip fib daddr type local tcp dport 8090 dnat to 10.88.0.2:80",
        "ip6 fib daddr type local tcp dport 8091 dnat to [fd88::2]:80"
      ])
    })))

  test("every fault during ADD leaves the kernel as it was", async () => {
    const report = await Effect.runPromise(faultSweep(portmapPipeline, {
      settings: { network: "pmnet", mappings: [{ hostPort: 8080, containerPort: 80, protocol: "udp", hostIP: undefined }], snat: true, masqAll: false, conditionsV4: [], conditionsV6: [], backend: "nftables", markMasqBit: 13, externalSetMarkChain: undefined },
      podIps: ["10.88.0.2"],
      podAddresses: ["10.88.0.2/24"],
      owner: "pm:test:1",
      localnetLinks: ["cni0"]
    }, { setup: hostWithBridge }))
    expect(report.runs.length).toBeGreaterThan(2)
    for (const run of report.runs) expect({ k: run.k, diff: run.diff }).toEqual({ k: run.k, diff: [] })
    expect(report.clean.undoDiff).toEqual([])
  })

  test("DEL removes exactly the pod's rules, twice, without prevResult or mappings", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      yield* hostWithBridge
      expect((yield* invoke(env("ADD", "c2"), conf())).exitCode).toBe(0)
      const before = mock.snapshot()
      expect((yield* invoke(env("ADD", "c1"), conf())).exitCode).toBe(0)
      for (let i = 0; i < 2; i++) {
        const del = yield* invoke(env("DEL", "c1"), conf({ prevResult: undefined, runtimeConfig: {} }))
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect((yield* backend.listFilterRules(HOST_NETNS, PORTMAP_TABLE)).length).toBeGreaterThan(0)
    })))

  test("CHECK passes after ADD and fails when the rules were removed by hand", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      yield* invoke(env("ADD"), conf())
      expect((yield* invoke(env("CHECK"), conf())).exitCode).toBe(0)
      const owner = (yield* backend.listFilterRules(HOST_NETNS, PORTMAP_TABLE))[0]!.comment
      yield* backend.deleteFilterRules(HOST_NETNS, PORTMAP_TABLE, owner)
      const broken = yield* invoke(env("CHECK"), conf())
      expect([broken.exitCode, broken.json!.msg]).toEqual([1, expect.stringContaining("expected")])
    })))

  test("GC removes the rules of attachments that are no longer valid", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      yield* invoke(env("ADD", "keep"), conf())
      yield* invoke(env("ADD", "gone"), conf())
      const countOf = Effect.map(backend.listFilterRules(HOST_NETNS, PORTMAP_TABLE), (rules) => new Set(rules.map((r) => r.comment)).size)
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
        "PREROUTING: -m addrtype --dst-type LOCAL -j TSCNI-PM-DNAT",
        "OUTPUT: -m addrtype --dst-type LOCAL -j TSCNI-PM-DNAT",
        "POSTROUTING: -j TSCNI-PM-MASQ",
        "TSCNI-PM-DNAT: -p tcp --dport 8080 -s 10.88.0.0/24 -j MARK --set-xmark 0x2000/0x2000",
        "TSCNI-PM-DNAT: -p tcp --dport 8080 -s 127.0.0.0/8 -j MARK --set-xmark 0x2000/0x2000",
        "TSCNI-PM-DNAT: -p tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80",
        "TSCNI-PM-DNAT: -p udp --dport 5353 -s 10.88.0.0/24 -j MARK --set-xmark 0x2000/0x2000",
        "TSCNI-PM-DNAT: -p udp --dport 5353 -s 127.0.0.0/8 -j MARK --set-xmark 0x2000/0x2000",
        "TSCNI-PM-DNAT: -p udp --dport 5353 -j DNAT --to-destination 10.88.0.2:53",
        "TSCNI-PM-MASQ: -d 10.88.0.2/32 -m mark --mark 0x2000/0x2000 -j MASQUERADE"
      ])
      expect(yield* rulesOf(6)).toContain("TSCNI-PM-DNAT: -p tcp --dport 8080 -j DNAT --to-destination [fd88::2]:80")
      expect((yield* rulesOf(6)).filter((rule) => rule.includes("127.0.0.0"))).toEqual([])
      expect(yield* backend.listFilterRules(HOST_NETNS)).toEqual([])
      expect(yield* backend.readSysctl(HOST_NETNS, "net.ipv4.conf.cni0.route_localnet")).toBe("1")
    })))

  test("markMasqBit, hostIP, conditions (iptables arguments) and masqAll; a newer pod's rules come first", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      const mappings = [{ hostPort: 8443, containerPort: 443, protocol: "tcp", hostIP: "192.0.2.10" }]
      const first = yield* invoke(env("ADD", "c1"), iptables({ runtimeConfig: { portMappings: mappings }, markMasqBit: 20, conditionsV4: ["!", "-s 198.51.100.0/24"], masqAll: true }))
      expect(first.exitCode).toBe(0)
      expect((yield* rulesOf(4)).filter((rule) => rule.startsWith("TSCNI-PM-"))).toEqual([
        "TSCNI-PM-DNAT: -d 192.0.2.10 -p tcp --dport 8443 ! -s 198.51.100.0/24 -s 0.0.0.0/0 -j MARK --set-xmark 0x100000/0x100000",
        "TSCNI-PM-DNAT: -d 192.0.2.10 -p tcp --dport 8443 ! -s 198.51.100.0/24 -j DNAT --to-destination 10.88.0.2:443",
        "TSCNI-PM-MASQ: -d 10.88.0.2/32 -m mark --mark 0x100000/0x100000 -j MASQUERADE"
      ])
      expect(yield* rulesOf(6)).toEqual([])
      const second = yield* invoke(env("ADD", "c2"), iptables({ runtimeConfig: { portMappings: [{ hostPort: 8443, containerPort: 443 }] }, snat: false }))
      expect(second.exitCode).toBe(0)
      expect((yield* rulesOf(4)).filter((rule) => rule.startsWith("TSCNI-PM-DNAT"))[0]).toBe("TSCNI-PM-DNAT: -p tcp --dport 8443 -j DNAT --to-destination 10.88.0.2:443")
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
      expect(rules).toContain("TSCNI-PM-DNAT: -p tcp --dport 8080 -s 10.88.0.0/24 -j TSCNI-TEST-MARK")
      expect(rules.filter((rule) => rule.includes("TSCNI-PM-MASQ"))).toEqual([])
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
        localnetLinks: ["cni0"]
      }, { setup: hostWithBridge }))
      expect(report.runs.length).toBeGreaterThan(2)
      expect(report.runs.map((run) => run.faultedOperation)).toContain("addIptablesRules")
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
      expect(report.runs.map((run) => run.operation)).toContain(backend === "iptables" ? "addIptablesRules" : "addFilterRules")
      expect(report.runs.map((run) => run.operation)).toContain("deleteConntrack")
      expect(report.clean.output.exitCode).toBe(0)
    })
  }

  test("DEL removes exactly the pod's rules, twice, without prevResult or mappings; the last DEL removes our chains", () =>
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
      expect(mock.diff(empty, mock.snapshot()).filter((line) => !line.includes("route_localnet"))).toEqual([])
    })))

  test("CHECK passes after ADD and fails when a rule or a jump was removed by hand", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* hostWithBridge
      yield* invoke(env("ADD"), iptables())
      expect((yield* invoke(env("CHECK"), iptables())).exitCode).toBe(0)
      const owner = (yield* backend.listIptablesRules(HOST_NETNS, { family: 6, table: "nat" })).rules.at(-1)!.comment
      yield* backend.deleteIptablesRules(HOST_NETNS, { family: 6, table: "nat", comment: owner })
      const broken = yield* invoke(env("CHECK"), iptables())
      expect([broken.exitCode, broken.json!.msg]).toEqual([1, expect.stringContaining("IPv6")])
    })))

  test("GC removes the rules of attachments that are no longer valid, in both families", () =>
    onMock(Effect.gen(function*() {
      yield* hostWithBridge
      yield* invoke(env("ADD", "keep"), iptables())
      yield* invoke(env("ADD", "gone"), iptables())
      const owners = (family: 4 | 6) =>
        Effect.map(Backend.use((backend) => backend.listIptablesRules(HOST_NETNS, { family, table: "nat" })), (listing) =>
          new Set(listing.rules.map((r) => r.comment).filter((c) => c !== "tscni")).size)
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
      expect(yield* backend.listFilterRules(HOST_NETNS)).toEqual([])
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
