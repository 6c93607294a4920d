import { describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { attachmentEnv, invokePlugin } from "@tscni/skel/testing"
import { type PluginExec, withFileLock } from "@tscni/steps"
import { makeFakeIpam } from "@tscni/steps/testing/fakeIpam"
import { makeFakePluginExec } from "@tscni/steps/testing/fakePluginExec"
import { CONF } from "./fixtures.ts"
import { attachmentKey, masqueradeChain, masqueradeTable } from "@tscni/steps"
import { bridgeIntentPath, bridgeLockPath, bridgePlugin, hostVethName, LOCK_DIR, ruleOwner } from "../src/index.ts"

type Json = Record<string, any>

/** A mock kernel plus a fake host-local, kept for the whole test. */
const world = () => {
  const ipam = makeFakeIpam("10.88.0")
  const exec = makeFakePluginExec({ "fake-ipam": ipam.plugin })
  return { ipam, exec, layer: Layer.mergeAll(MockBackend.layer, exec.layer) }
}


const env = attachmentEnv
const invoke = invokePlugin(bridgePlugin)

const run = <A, E>(
  w: ReturnType<typeof world>,
  body: Effect.Effect<A, E, Backend | MockBackend.MockControlService | PluginExec>
) =>
  Effect.runPromise(body.pipe(Effect.provide(w.layer)))

const pod = (name: string) => Backend.use((backend) => backend.createNetns(name))

/** The network's masquerade elements, as `set { key } owner` lines. */
const MASQ = masqueradeTable("podnet")
const masqElements = Effect.map(
  Backend.use((backend) => backend.listNftElements(HOST_NETNS, MASQ)),
  (elements) => elements.map((e) => `${e.set} { ${e.key} } ${e.comment}`)
)
const masqOf = (container: string, ip: string) => [
  `pods4 { ${ip} } ${ruleOwner("podnet", container, "eth0")}`,
  `own4 { ${ip} . 10.88.0.0/24 } ${ruleOwner("podnet", container, "eth0")}`
]
/** Two pods c1 and c2 ADDed (checked) with `conf`, and the mock kernel's state before them. */
const twoPodsAdded = (conf: Json = CONF) => Effect.gen(function*() {
  const mock = yield* MockBackend.MockControlService
  const backend = yield* Backend
  const ns1 = yield* pod("p1")
  const ns2 = yield* pod("p2")
  const before = mock.snapshot()
  const add1 = yield* invoke(env("ADD", "c1", ns1), conf)
  const add2 = yield* invoke(env("ADD", "c2", ns2), conf)
  expect([add1.exitCode, add2.exitCode]).toEqual([0, 0])
  return { mock, backend, ns1, ns2, before, add1, add2 }
})

/** Diff lines of what stays on the host after its last pod: host-wide sysctls, the network's (empty) tables. */
const isShared = (line: string) => line.includes("sysctl net.") || line.includes("+ nft table")

describe("bridge ADD on the mock kernel", () => {
  test("an intent file that cannot be written is an I/O error (code 5), not an internal one, and nothing is made", async () => {
    const w = world()
    // a directory where the intent file goes: writing it fails with EISDIR
    const intent = bridgeIntentPath("br-intent")
    mkdirSync(intent, { recursive: true })
    try {
      await run(w, Effect.gen(function*() {
        const mock = yield* MockBackend.MockControlService
        const ns = yield* pod("p1")
        const before = mock.snapshot()
        const add = yield* invoke(env("ADD", "c1", ns), { ...CONF, bridge: "br-intent" })
        expect({ exit: add.exitCode, code: add.json?.code, msg: add.json?.msg }).toEqual({ exit: 1, code: 5, msg: `bridge: writing ${intent}` })
        expect(mock.diff(before, mock.snapshot())).toEqual([])
        expect([...w.ipam.allocations()]).toEqual([])
      }))
    } finally {
      rmSync(intent, { recursive: true, force: true })
    }
  })

  test("plugs the pod into the bridge with its IP, routes, gateway and masquerade", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect(add.exitCode).toBe(0)
      const veth = hostVethName("c1", "eth0")
      expect(add.json!.interfaces).toEqual([
        { name: "br-test", mac: expect.any(String) },
        { name: veth, mac: expect.any(String) },
        { name: "eth0", mac: expect.any(String), sandbox: ns }
      ])
      expect(add.json!.ips).toEqual([{ address: "10.88.0.2/24", gateway: "10.88.0.1", interface: 2 }])
      expect(add.json!.routes).toEqual([{ dst: "0.0.0.0/0", gw: "10.88.0.1" }])

      const bridge = yield* backend.getLink(HOST_NETNS, "br-test")
      expect(bridge).toMatchObject({ kind: "bridge", up: true, alias: "tscni:podnet" })
      const hostEnd = yield* backend.getLink(HOST_NETNS, veth)
      expect(hostEnd).toMatchObject({ kind: "veth", up: true, master: bridge.index, bridgePort: { hairpin: true, isolated: false } })
      expect(hostEnd.alias).toBe("tscni:podnet/c1/eth0")
      const podEnd = yield* backend.getLink(ns, "eth0")
      expect(podEnd).toMatchObject({ up: true, mac: add.json!.interfaces[2].mac })
      expect((yield* backend.listAddresses(ns, "eth0")).map((a) => a.cidr)).toContain("10.88.0.2/24")
      expect((yield* backend.listAddresses(HOST_NETNS, "br-test")).map((a) => a.cidr)).toEqual(["10.88.0.1/24"])
      expect(yield* backend.listRoutes(ns)).toContainEqual(expect.objectContaining({ dst: "0.0.0.0/0", gateway: "10.88.0.1", link: "eth0" }))
      expect(yield* backend.readSysctl(HOST_NETNS, "net.ipv4.ip_forward")).toBe("1")
      expect(yield* backend.readSysctl(HOST_NETNS, "net.bridge.bridge-nf-call-iptables")).toBe("1")
      expect((yield* masqElements).sort()).toEqual(masqOf("c1", "10.88.0.2").sort())
      expect(w.ipam.allocations().get("c1/eth0")).toBe("10.88.0.2/24")
    }))
  })

  // the fault sweeps of ADD (every option, IPv6, dual stack, a second pod) are in faultSweep.test.ts

  test("a cleanup inside a step that fails is not swallowed: the error's details say what was left", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      // naming the new veth fails, and so does removing it again
      mock.failWhen((call) => (call.operation === "setLink" && JSON.stringify(call.args).includes('"alias"') && JSON.stringify(call.args).includes("veth")) || call.operation === "deleteLink")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      mock.clearFaults()
      expect([add.exitCode, add.json?.code]).toEqual([1, 5])
      expect(String(add.json?.details)).toContain("rollback incomplete: vethPair: ")
    }))
  })

  test("an IPAM failure (range exhausted) leaves no veth behind", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      w.ipam.failAdd({ code: 11, msg: "no IP addresses available in range set 10.88.0.0/24" })
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect([add.exitCode, add.json!.code, add.json!.msg]).toEqual([1, 11, "no IP addresses available in range set 10.88.0.0/24"])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("bad configuration is a code 7/2 error naming the field, with no change", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      const cases: Array<[Json, Record<string, string>, number, string]> = [
        [{ ...CONF, mtu: 10 }, {}, 7, "mtu"],
        [{ ...CONF, bridge: "a-name-that-is-too-long" }, {}, 7, "bridge"],
        [{ ...CONF, runtimeConfig: { mac: "01:00:5e:00:00:01" } }, {}, 7, "runtimeConfig.mac"],
        [{ ...CONF, ipMasqBackend: "xtables" }, {}, 7, "ipMasqBackend"],
        [{ ...CONF, disableContainerInterface: true }, {}, 7, "disableContainerInterface"],
        [CONF, { CNI_ARGS: "IgnoreUnknown=1;MAC=zz:zz" }, 4, "CNI_ARGS"]
      ]
      for (const [conf, extraEnv, code, field] of cases) {
        const out = yield* invoke({ ...env("ADD", "c1", ns), ...extraEnv }, conf)
        expect([out.exitCode, out.json!.code]).toEqual([1, code])
        expect(out.json!.msg).toContain(field)
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("a MAC from runtimeConfig, args or CNI_ARGS lands on the pod interface", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const sources: Array<[Json, Record<string, string>, string]> = [
        [{ ...CONF, runtimeConfig: { mac: "0a:58:0a:58:00:aa" } }, {}, "0a:58:0a:58:00:aa"],
        [{ ...CONF, args: { cni: { mac: "0a:58:0a:58:00:bb" } } }, {}, "0a:58:0a:58:00:bb"],
        [CONF, { CNI_ARGS: "IgnoreUnknown=1;MAC=0A:58:0A:58:00:CC" }, "0a:58:0a:58:00:cc"]
      ]
      for (const [index, [conf, extraEnv, mac]] of sources.entries()) {
        const ns = yield* pod(`m${index}`)
        const out = yield* invoke({ ...env("ADD", `m${index}`, ns), ...extraEnv }, conf)
        expect(out.exitCode).toBe(0)
        expect((yield* backend.getLink(ns, "eth0")).mac).toBe(mac)
      }
    }))
  })
})

describe("bridge DEL, CHECK and GC on the mock kernel", () => {
  test("a pod's ADD and DEL never list the host's links or routes (cost constant in what else the host has); a DEL that leaves other ports takes no exclusive lock", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const first = yield* pod("p1")
      const second = yield* pod("p2")
      expect((yield* invoke(env("ADD", "c1", first), CONF)).exitCode).toBe(0)
      const before = mock.calls().length
      const add = yield* invoke(env("ADD", "c2", second), CONF)
      expect(add.exitCode).toBe(0)
      // the exclusive lock is held by someone else: a DEL that needed it would wait and fail
      const del = yield* withFileLock(bridgeLockPath("br-test"), invoke(env("DEL", "c2", second), { ...CONF, prevResult: add.json }), () => new Error("lock"), Duration.seconds(5), "exclusive")
      expect(del.exitCode).toBe(0)
      const listings = mock.calls().slice(before).map((call) => call.operation).filter((operation) => operation === "listLinks" || operation === "listRoutes")
      expect(listings).toEqual([])
    }))
  })

  test("DEL removes everything of the pod; the last pod's DEL removes tscni's bridge", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const { mock, backend, ns1, ns2, before, add1, add2 } = yield* twoPodsAdded()
      // the second pod adopted bridge and gateway
      expect((yield* backend.listAddresses(HOST_NETNS, "br-test")).map((a) => a.cidr)).toEqual(["10.88.0.1/24"])

      expect((yield* invoke(env("DEL", "c1", ns1), { ...CONF, prevResult: add1.json })).exitCode).toBe(0)
      expect((yield* backend.getLink(HOST_NETNS, "br-test")).up).toBe(true)
      expect((yield* backend.listAddresses(HOST_NETNS, "br-test")).map((a) => a.cidr)).toEqual(["10.88.0.1/24"])
      expect((yield* masqElements).sort()).toEqual(masqOf("c2", "10.88.0.3").sort())

      expect((yield* invoke(env("DEL", "c2", ns2), { ...CONF, prevResult: add2.json })).exitCode).toBe(0)
      // host-wide switches stay (as with the reference plugin), and the network's masquerade
      // table, empty (GC removes it); nothing of the pods is left
      expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
      expect(yield* masqElements).toEqual([])
      expect(w.ipam.allocations().size).toBe(0)
    }))
  })

  test("the last pod's DEL deletes its veth and the bridge in one batch; an earlier pod's DEL only its veth; a batch the kernel refuses falls back to one by one", async () => {
    for (const refused of [false, true]) {
      const w = world()
      await run(w, Effect.gen(function*() {
        const { mock, backend, ns1, ns2, before, add1, add2 } = yield* twoPodsAdded()
        const deletions = (from: number) =>
          mock.calls().slice(from).filter((call) => call.operation.startsWith("deleteLink")).map((call) => `${call.operation} ${JSON.stringify(call.args.slice(1))}`)
        let from = mock.calls().length
        expect((yield* invoke(env("DEL", "c1", ns1), { ...CONF, prevResult: add1.json })).exitCode).toBe(0)
        expect(deletions(from)).toEqual([`deleteLink ${JSON.stringify([hostVethName("c1", "eth0")])}`])
        if (refused) mock.failWhen((call) => call.operation === "deleteLinksTogether", "Busy")
        from = mock.calls().length
        expect((yield* invoke(env("DEL", "c2", ns2), { ...CONF, prevResult: add2.json })).exitCode).toBe(0)
        mock.clearFaults()
        const together = `deleteLinksTogether ${JSON.stringify([[hostVethName("c2", "eth0"), "br-test"]])}`
        const veth = [`deleteLink ${JSON.stringify([hostVethName("c2", "eth0")])}`]
        // after the batch the pipeline's undo finds the veth gone, and looks for its pod end (gone too)
        expect(deletions(from)).toEqual(
          refused ? [together, ...veth, `deleteLink ${JSON.stringify(["br-test"])}`] : [together, ...veth, `deleteLink ${JSON.stringify(["eth0"])}`]
        )
        expect((yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)).not.toContain("br-test")
        expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
      }))
    }
  })

  test("DEL succeeds twice, without ADD, and with the namespace already gone", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      yield* backend.deleteNetns(ns)
      for (const netns of [ns, ""]) {
        const del = yield* invoke(env("DEL", "c1", netns), { ...CONF, prevResult: add.json })
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(yield* backend.listLinks(HOST_NETNS)).not.toContainEqual(expect.objectContaining({ name: hostVethName("c1", "eth0") }))
      expect(yield* masqElements).toEqual([])
      expect(w.ipam.allocations().size).toBe(0)
      const never = yield* invoke(env("DEL", "never-added", ""), CONF)
      expect(never.exitCode).toBe(0)
      expect(mock.calls().length).toBeGreaterThan(0)
    }))
  })

  test("DEL works on a host without nftables when ADD never used it", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      const conf = { ...CONF, ipMasq: false }
      const add = yield* invoke(env("ADD", "c1", ns), conf)
      expect(add.exitCode).toBe(0)
      mock.failWhen((call) => call.operation.endsWith("FilterRules") || call.operation.includes("Nft"), "Unsupported")
      const del = yield* invoke(env("DEL", "c1", ns), { ...conf, prevResult: add.json })
      mock.clearFaults()
      expect([del.exitCode, del.stdout]).toEqual([0, ""])
      expect(mock.diff(before, mock.snapshot()).filter((line) => !line.includes("sysctl net."))).toEqual([])
    }))
  })

  test("the last pod's DEL does not remove the bridge while another ADD holds it", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      // an ADD in flight: it holds the bridge's lock shared until it has plugged its pod in
      const release = yield* Deferred.make<void>()
      const holding = yield* Deferred.make<void>()
      const inFlight = yield* Effect.forkChild(
        withFileLock(bridgeLockPath("br-test"), Deferred.succeed(holding, undefined).pipe(Effect.andThen(Deferred.await(release))), (f) => f, Duration.seconds(5), "shared")
      )
      yield* Deferred.await(holding)
      const del = yield* Effect.forkChild(invoke(env("DEL", "c1", ns), { ...CONF, prevResult: add.json }))
      yield* Effect.sleep(Duration.millis(300))
      expect((yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)).toContain("br-test")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(inFlight)
      expect((yield* Fiber.join(del)).exitCode).toBe(0)
      expect((yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)).not.toContain("br-test")
    }))
  })

  test("a bridge a killed ADD created but could not yet mark (no alias) is removed by DEL; an unmarked one otherwise stays", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      // an admin's bridge of that name: never ours
      yield* backend.createLink({ netns: HOST_NETNS, name: "br-test", kind: "bridge" })
      expect((yield* invoke(env("DEL", "c1", ns), CONF)).exitCode).toBe(0)
      expect((yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)).toContain("br-test")
      // what an ADD killed between creating the bridge and setting its alias leaves
      mkdirSync(LOCK_DIR, { recursive: true })
      writeFileSync(bridgeIntentPath("br-test"), "podnet")
      expect((yield* invoke(env("DEL", "c1", ns), CONF)).exitCode).toBe(0)
      expect((yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)).not.toContain("br-test")
      expect(existsSync(bridgeIntentPath("br-test"))).toBe(false)
    }))
  })

  test("GC removes a pod's veth even when a killed ADD never attached it", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      yield* invoke(env("ADD", "c2", ns), CONF)
      // what an ADD killed right after vethPair leaves: an aliased veth on no bridge
      const ns2 = yield* pod("p2")
      const veth = hostVethName("c1", "eth0")
      yield* backend.createVeth({ netns: HOST_NETNS, name: veth, peerNetns: ns2, peerName: "eth0" })
      yield* backend.setLink(HOST_NETNS, veth, { alias: "tscni:podnet/c1/eth0" })
      const gc = yield* invoke({ CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, {
        ...CONF,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "c2", ifname: "eth0" }]
      })
      expect(gc.exitCode).toBe(0)
      const names = (yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)
      expect(names).not.toContain(veth)
      expect(names).toContain(hostVethName("c2", "eth0"))
    }))
  })

  test("CHECK passes after ADD and names what was changed by hand", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      const check = () => invoke(env("CHECK", "c1", ns), { ...CONF, prevResult: add.json })
      expect((yield* check()).exitCode).toBe(0)

      yield* backend.deleteAddress(ns, "eth0", "10.88.0.2/24")
      const noAddress = yield* check()
      expect([noAddress.exitCode, noAddress.json!.msg]).toEqual([1, expect.stringContaining("10.88.0.2/24")])
      yield* backend.addAddress(ns, "eth0", "10.88.0.2/24")
      expect((yield* check()).exitCode).toBe(0)

      yield* backend.setLink(HOST_NETNS, hostVethName("c1", "eth0"), { master: null })
      const detached = yield* check()
      expect([detached.exitCode, detached.json!.msg]).toEqual([1, expect.stringContaining("not a port of br-test")])
    }))
  })

  test("GC removes the veth, rules and IP of attachments that are no longer valid", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns1 = yield* pod("p1")
      const ns2 = yield* pod("p2")
      yield* invoke(env("ADD", "c1", ns1), CONF)
      yield* invoke(env("ADD", "c2", ns2), CONF)
      const gc = yield* invoke({ CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, {
        ...CONF,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "c2", ifname: "eth0" }]
      })
      expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
      const names = (yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)
      expect(names).not.toContain(hostVethName("c1", "eth0"))
      expect(names).toContain(hostVethName("c2", "eth0"))
      expect((yield* masqElements).sort()).toEqual(masqOf("c2", "10.88.0.3").sort())
      expect([...w.ipam.allocations().keys()]).toEqual(["c2/eth0"])
    }))
  })

  test("forceAddress: a foreign address in the pod network blocks ADD unless forced; rollback restores it", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      yield* backend.createLink({ netns: HOST_NETNS, name: "br-test", kind: "bridge" })
      yield* backend.setLink(HOST_NETNS, "br-test", { up: true })
      yield* backend.addAddress(HOST_NETNS, "br-test", "10.88.0.254/24")
      const before = mock.snapshot()
      const refused = yield* invoke(env("ADD", "c1", ns), CONF)
      expect([refused.exitCode, refused.json!.code, refused.json!.msg]).toEqual([1, 7, expect.stringContaining("forceAddress")])
      expect(mock.diff(before, mock.snapshot())).toEqual([])

      const forced = { ...CONF, forceAddress: true }
      mock.failWhen((call) => call.operation === "addNftElements") // fail at the very end: the masquerade
      const failed = yield* invoke(env("ADD", "c1", ns), forced)
      mock.clearFaults()
      expect(failed.exitCode).toBe(1)
      expect(mock.diff(before, mock.snapshot())).toEqual([])

      expect((yield* invoke(env("ADD", "c1", ns), forced)).exitCode).toBe(0)
      expect((yield* backend.listAddresses(HOST_NETNS, "br-test")).map((a) => a.cidr)).toEqual(["10.88.0.1/24"])
    }))
  })

  test("a bridge name that is another kind of link is code 7 saying so, nothing changed", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      yield* backend.createVeth({ netns: HOST_NETNS, name: "br-test", peerNetns: HOST_NETNS, peerName: "br-test-peer" })
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect([add.exitCode, add.json?.code, add.json?.msg]).toEqual([1, 7, "bridge: br-test exists and is a veth link, not a bridge"])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect([...w.ipam.allocations()]).toEqual([])
    }))
  })

  test("an interface name already taken in the pod is refused, nothing left", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      yield* backend.createVeth({ netns: ns, name: "eth0", peerNetns: ns, peerName: "other" })
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect(add.exitCode).toBe(1)
      expect(add.json!.msg).toContain("eth0")
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})

describe("bridge: pods of the layout before keyed tables (an upgraded node)", () => {
  /** The masquerade rule the old layout gave a pod, found by its owner comment. */
  const legacyRule = (container: string, ip: string) => ({
    family: "ip" as const,
    table: "tscni-bridge",
    chain: "postrouting",
    rule: `ip saddr ${ip} ip daddr != 10.88.0.0/24 ip daddr != 224.0.0.0/4 masquerade`,
    comment: ruleOwner("podnet", container, "eth0"),
    baseChain: { type: "nat" as const, hook: "postrouting" as const, priority: 100 }
  })
  const legacyTable = { family: "ip", name: "tscni-bridge" } as const

  test("CHECK passes on the old rules; DEL removes them (the old table with the last); GC removes stale ones", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const pods = []
      for (const [container, ip] of [["c1", "10.88.0.2"], ["c2", "10.88.0.3"], ["c3", "10.88.0.4"]] as const) {
        const ns = yield* pod(`p-${container}`)
        const add = yield* invoke(env("ADD", container, ns), CONF)
        expect(add.exitCode).toBe(0)
        // as the old layout had it: no elements, a rule in the old table
        yield* backend.deleteNftElements(HOST_NETNS, MASQ, masqOf(container, ip).map((line) => ({ set: line.split(" ")[0]!, key: line.slice(line.indexOf("{ ") + 2, line.indexOf(" }")) })))
        yield* backend.addFilterRules(HOST_NETNS, [legacyRule(container, ip)])
        pods.push({ container, ns, result: add.json })
      }
      expect(yield* masqElements).toEqual([])
      const [p1, p2] = pods
      expect((yield* invoke(env("CHECK", "c1", p1!.ns), { ...CONF, prevResult: p1!.result })).exitCode).toBe(0)
      // without its rule, an old pod fails CHECK like a new one without its elements
      yield* backend.deleteFilterRules(HOST_NETNS, legacyTable, ruleOwner("podnet", "c1", "eth0"))
      expect((yield* invoke(env("CHECK", "c1", p1!.ns), { ...CONF, prevResult: p1!.result })).exitCode).toBe(1)
      yield* backend.addFilterRules(HOST_NETNS, [legacyRule("c1", "10.88.0.2")])
      expect((yield* invoke(env("DEL", "c1", p1!.ns), { ...CONF, prevResult: p1!.result })).exitCode).toBe(0)
      expect((yield* backend.listFilterRules(HOST_NETNS, legacyTable)).map((r) => r.comment)).toEqual([
        ruleOwner("podnet", "c2", "eth0"),
        ruleOwner("podnet", "c3", "eth0")
      ])
      const gc = yield* invoke({ CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, {
        ...CONF,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "c2", ifname: "eth0" }]
      })
      expect(gc.exitCode).toBe(0)
      expect((yield* backend.listFilterRules(HOST_NETNS, legacyTable)).map((r) => r.comment)).toEqual([ruleOwner("podnet", "c2", "eth0")])
      expect((yield* invoke(env("DEL", "c2", p2!.ns), { ...CONF, prevResult: p2!.result })).exitCode).toBe(0)
      expect(yield* backend.listFilterRules(HOST_NETNS, legacyTable)).toEqual([])
    }))
  })
})

describe("bridge with ipMasqBackend iptables on the mock kernel", () => {
  const IPT = { ...CONF, ipMasqBackend: "iptables" }
  const nat = { family: 4, table: "nat" } as const
  const masqRules = Effect.map(Backend.use((backend) => backend.listIptablesRules(HOST_NETNS, nat)), (listing) =>
    listing.rules.map((r) => `${r.chain}: ${r.args.join(" ")}`))

  const chain = (container: string) => masqueradeChain(attachmentKey(container, "eth0"))

  test("ADD masquerades the pod's traffic leaving its network in a chain of its own entered from TSCNI-MASQ, nothing in nftables", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), IPT)
      expect(add.exitCode).toBe(0)
      expect(yield* masqRules).toEqual([
        "POSTROUTING: -j TSCNI-MASQ",
        `${chain("c1")}: -s 10.88.0.2/32 -d 10.88.0.0/24 -j RETURN`,
        `${chain("c1")}: -s 10.88.0.2/32 ! -d 224.0.0.0/4 -j MASQUERADE`,
        `TSCNI-MASQ: -j ${chain("c1")}`
      ])
      expect(yield* backend.listNftTables(HOST_NETNS, "tscni-")).toEqual([])
      expect(yield* backend.listIptablesRules(HOST_NETNS, { family: 6, table: "nat" })).toEqual({ chains: [], rules: [] })
      expect((yield* invoke(env("CHECK", "c1", ns), { ...IPT, prevResult: add.json })).exitCode).toBe(0)
    }))
  })

  test("DEL removes the pod's chain and its jump (twice, without the namespace); the shared chain stays", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const { mock, backend, ns1, ns2, before, add1, add2 } = yield* twoPodsAdded(IPT)
      yield* backend.deleteNetns(ns1)
      for (const netns of [ns1, ""]) {
        const del = yield* invoke(env("DEL", "c1", netns), { ...IPT, prevResult: add1.json })
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(yield* masqRules).toEqual([
        "POSTROUTING: -j TSCNI-MASQ",
        `${chain("c2")}: -s 10.88.0.3/32 -d 10.88.0.0/24 -j RETURN`,
        `${chain("c2")}: -s 10.88.0.3/32 ! -d 224.0.0.0/4 -j MASQUERADE`,
        `TSCNI-MASQ: -j ${chain("c2")}`
      ])
      expect((yield* invoke(env("DEL", "c2", ns2), { ...IPT, prevResult: add2.json })).exitCode).toBe(0)
      const left = mock.diff(before, mock.snapshot()).filter((line) => !line.includes("sysctl net.") && !line.includes(ns1))
      expect(left).toEqual([
        "host: + iptables chain 4 nat TSCNI-MASQ",
        'host: + iptables rule 4 nat POSTROUTING "-j TSCNI-MASQ" comment "tscni"'
      ])
      expect(w.ipam.allocations().size).toBe(0)
    }))
  })

  test("CHECK fails when the pod's masquerade chain was removed by hand", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), IPT)
      const check = () => invoke(env("CHECK", "c1", ns), { ...IPT, prevResult: add.json })
      expect((yield* check()).exitCode).toBe(0)
      yield* backend.deleteIptablesPodChains(HOST_NETNS, { ...nat, comment: ruleOwner("podnet", "c1", "eth0"), chains: [{ name: chain("c1"), entry: "TSCNI-MASQ" }] })
      const broken = yield* check()
      expect([broken.exitCode, broken.json!.msg]).toEqual([1, expect.stringContaining(`has no chain ${chain("c1")}`)])
    }))
  })

  test("GC removes the rules of attachments that are no longer valid", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const ns1 = yield* pod("p1")
      const ns2 = yield* pod("p2")
      yield* invoke(env("ADD", "c1", ns1), IPT)
      yield* invoke(env("ADD", "c2", ns2), IPT)
      const gc = yield* invoke({ CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, {
        ...IPT,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "c2", ifname: "eth0" }]
      })
      expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
      expect((yield* masqRules).filter((rule) => rule.includes("10.88.0.2"))).toEqual([])
      expect((yield* masqRules).filter((rule) => rule.includes("10.88.0.3"))).toHaveLength(2)
    }))
  })
})

describe("the bridge tests' lock dir", () => {
  // lock and intent files must not land in the host's /run/tscni, which real runtimes and
  // other test runs share; tests/preload.ts sets TSCNI_LOCK_DIR before names.ts is loaded
  test("is this run's own (TSCNI_LOCK_DIR from the test preload), not /run/tscni", () => {
    expect(LOCK_DIR).not.toBe("/run/tscni")
    expect(LOCK_DIR).toBe(process.env.TSCNI_LOCK_DIR!)
  })
})
