import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
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

  test("every fault during ADD leaves the kernel as it was", async () => {
    const report = await Effect.runPromise(faultSweep(portmapPipeline, {
      settings: { network: "pmnet", mappings: [{ hostPort: 8080, containerPort: 80, protocol: "udp", hostIP: undefined }], snat: true, masqAll: false, conditionsV4: [], conditionsV6: [] },
      podIps: ["10.88.0.2"],
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

  test("bad mappings are code 7 naming the field; iptables backend is code 2; nothing changes", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      yield* hostWithBridge
      const before = mock.snapshot()
      const cases: Array<[Json, number, string]> = [
        [{ runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } }, 7, "hostPort"],
        [{ runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 70000 }] } }, 7, "containerPort"],
        [{ runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, protocol: "icmp" }] } }, 7, "protocol"],
        [{ runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: "nope" }] } }, 7, "hostIP"],
        [{ backend: "iptables" }, 2, "backend"],
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
