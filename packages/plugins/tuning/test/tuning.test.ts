import { attachmentKey } from "@tscni/steps"
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { invocationFaultSweep, invocationRunsNotFailedAtTheirFault } from "@tscni/steps/testing/invocationFaultSweep"
import { handleInvocation } from "@tscni/skel"
import { makeTuningPlugin, resolveSysctlKey, statePath, type TuningOptions } from "../src/index.ts"

type Json = Record<string, any>

const scratch: Array<string> = []
afterAll(() => scratch.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

/** A data directory and an allowlist path (absent unless a test writes it) of its own. */
const fresh = (): TuningOptions & { readonly root: string } => {
  const root = mkdtempSync(join(tmpdir(), "tscni-tuning-"))
  scratch.push(root)
  return { root, dataDir: join(root, "data"), allowlistPath: join(root, "allowlist.conf") }
}

const NETWORK = "tunenet"
const POD_MAC = "0a:58:0a:01:00:02"

const CONF: Json = {
  cniVersion: "1.0.0",
  name: NETWORK,
  type: "tuning",
  sysctl: { "net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv4.conf.all.route_localnet": "1" },
  mac: "c2:b0:57:49:47:f1",
  mtu: 1400,
  promisc: true,
  allmulti: true,
  txQLen: 2000
}

const prevResult = (ns: string, version = "1.0.0"): Json => ({
  cniVersion: version,
  interfaces: [{ name: "veth-host", mac: "0a:58:0a:01:00:01" }, { name: "eth0", mac: POD_MAC, sandbox: ns }],
  ips: [{ address: "10.1.0.2/24", gateway: "10.1.0.1", interface: 1, ...(version < "1.0.0" ? { version: "4" } : {}) }]
})

const env = (command: string, netns: string, id = "c1", extra: Record<string, string> = {}) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: id,
  CNI_NETNS: netns,
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
  ...extra
})

const invoke = (options: TuningOptions, environment: Record<string, string>, conf: Json) =>
  handleInvocation(makeTuningPlugin(options), { env: environment, stdin: Effect.succeed(JSON.stringify(conf)) }).pipe(
    Effect.map((outcome) => ({ ...outcome, json: outcome.stdout === "" ? undefined : (JSON.parse(outcome.stdout) as Json) }))
  )

const onMock = <A, E>(body: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(body.pipe(Effect.provide(MockBackend.layer)))

/** A pod namespace with eth0, the end of a veth whose other end is in the host. */
const pod = (name = "p1", id = name) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const ns = yield* backend.createNetns(name)
    yield* backend.createVeth({ netns: HOST_NETNS, name: `veth-${id}`, peerNetns: ns, peerName: "eth0", peerMac: POD_MAC })
    yield* backend.setLink(ns, "eth0", { up: true })
    return ns
  })

const stateFiles = (options: TuningOptions): Array<string> => {
  const dir = join(options.dataDir, NETWORK)
  return existsSync(dir) ? readdirSync(dir) : []
}

describe("tuning ADD and DEL on the mock kernel", () => {
  test("ADD applies every option; DEL restores exactly the previous state and removes the state file", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod()
      const before = mock.snapshot()
      const add = yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })
      expect([add.exitCode, add.stdout]).toEqual([0, expect.any(String)])
      // prevResult comes back, with the new MAC on the pod interface only
      expect(add.json).toEqual({ ...prevResult(ns), interfaces: [prevResult(ns).interfaces[0], { name: "eth0", mac: "c2:b0:57:49:47:f1", sandbox: ns }] })

      expect(yield* backend.getLink(ns, "eth0")).toMatchObject({
        mac: "c2:b0:57:49:47:f1",
        mtu: 1400,
        promisc: true,
        allmulti: true,
        txqlen: 2000
      })
      expect(yield* backend.readSysctl(ns, "net.ipv4.conf.eth0.arp_notify")).toBe("1")
      expect(yield* backend.readSysctl(ns, "net.ipv4.conf.all.route_localnet")).toBe("1")
      // only the pod namespace changed
      expect(mock.diff(before, mock.snapshot()).every((line) => line.includes(ns) || line.includes("eth0"))).toBe(true)

      const file = statePath(options.dataDir, NETWORK, "c1", "eth0")
      expect(file).toBe(join(options.dataDir, NETWORK, `${attachmentKey("c1", "eth0")}.json`))
      const state = JSON.parse(readFileSync(file, "utf8")) as Json
      expect(state).toMatchObject({ containerId: "c1", ifname: "eth0", netns: ns })
      expect(state.handles.sysctls).toContainEqual(expect.objectContaining({ key: "net.ipv4.conf.eth0.arp_notify", previous: "0" }))
      expect(state.handles.link).toContainEqual(expect.objectContaining({ applied: { mac: "c2:b0:57:49:47:f1" }, previous: { mac: POD_MAC } }))

      const del = yield* invoke(options, env("DEL", ns), { ...CONF, prevResult: add.json })
      expect([del.exitCode, del.stdout]).toEqual([0, ""])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect(stateFiles(options)).toEqual([])
    }))
  })

  test("each option alone is applied and undone", async () => {
    const cases: Array<[Json, (link: Json, sysctl: string) => void]> = [
      [{ mac: "c2:00:00:00:00:01" }, (link) => expect(link.mac).toBe("c2:00:00:00:00:01")],
      [{ mtu: 9000 }, (link) => expect(link.mtu).toBe(9000)],
      [{ promisc: true }, (link) => expect(link.promisc).toBe(true)],
      [{ allmulti: true }, (link) => expect(link.allmulti).toBe(true)],
      [{ txQLen: 0 }, (link) => expect(link.txqlen).toBe(0)],
      [{ sysctl: { "net/ipv4/conf/IFNAME/arp_notify": "1" } }, (_, sysctl) => expect(sysctl).toBe("1")]
    ]
    for (const [extra, verify] of cases) {
      const options = fresh()
      await onMock(Effect.gen(function*() {
        const backend = yield* Backend
        const mock = yield* MockBackend.MockControlService
        const ns = yield* pod()
        const before = mock.snapshot()
        const conf = { cniVersion: "1.0.0", name: NETWORK, type: "tuning", ...extra, prevResult: prevResult(ns) }
        const add = yield* invoke(options, env("ADD", ns), conf)
        expect({ extra, code: add.exitCode }).toEqual({ extra, code: 0 })
        verify(yield* backend.getLink(ns, "eth0"), yield* backend.readSysctl(ns, "net.ipv4.conf.eth0.arp_notify"))
        expect((yield* invoke(options, env("CHECK", ns), { ...conf, prevResult: add.json })).exitCode).toBe(0)
        expect((yield* invoke(options, env("DEL", ns), conf)).exitCode).toBe(0)
        expect({ extra, diff: mock.diff(before, mock.snapshot()) }).toEqual({ extra, diff: [] })
      }))
    }
  })

  test("args.cni overrides the plugin keys; the MAC comes from args.cni, runtimeConfig, CNI_ARGS, mac in that order", async () => {
    const cases: Array<[Json, Record<string, string>, string]> = [
      [{ mac: "c2:00:00:00:00:01" }, {}, "c2:00:00:00:00:01"],
      [{ mac: "c2:00:00:00:00:01" }, { CNI_ARGS: "IgnoreUnknown=1;MAC=c2:00:00:00:00:02" }, "c2:00:00:00:00:02"],
      [{ mac: "c2:00:00:00:00:01", runtimeConfig: { mac: "c2:00:00:00:00:03" } }, { CNI_ARGS: "MAC=c2:00:00:00:00:02" }, "c2:00:00:00:00:03"],
      [
        { mac: "c2:00:00:00:00:01", runtimeConfig: { mac: "c2:00:00:00:00:03" }, args: { cni: { mac: "C2:00:00:00:00:04" } } },
        { CNI_ARGS: "MAC=c2:00:00:00:00:02" },
        "c2:00:00:00:00:04"
      ]
    ]
    for (const [extra, extraEnv, mac] of cases) {
      const options = fresh()
      await onMock(Effect.gen(function*() {
        const ns = yield* pod()
        const add = yield* invoke(options, env("ADD", ns, "c1", extraEnv), { ...CONF, ...extra, prevResult: prevResult(ns) })
        expect(add.exitCode).toBe(0)
        expect((yield* Backend.use((b) => b.getLink(ns, "eth0"))).mac).toBe(mac)
        expect(add.json!.interfaces[1].mac).toBe(mac)
      }))
    }
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod()
      const args = { cni: { mtu: 1300, promisc: false, allmulti: false, txQLen: 10, sysctl: { "net.ipv4.conf.IFNAME.arp_notify": "2" } } }
      const add = yield* invoke(options, env("ADD", ns), { ...CONF, args, prevResult: prevResult(ns) })
      expect(add.exitCode).toBe(0)
      // promisc false means "leave it", as in the reference
      expect(yield* backend.getLink(ns, "eth0")).toMatchObject({ mtu: 1300, promisc: false, allmulti: false, txqlen: 10 })
      expect(yield* backend.readSysctl(ns, "net.ipv4.conf.eth0.arp_notify")).toBe("2")
      expect(yield* backend.readSysctl(ns, "net.ipv4.conf.all.route_localnet")).toBe("1")
    }))
  })

  test("a fault at every backend call of ADD fails it at that fault, leaving the kernel unchanged and no state file", async () => {
    const options = fresh()
    const report = await Effect.runPromise(invocationFaultSweep({
      world: () => ({ layer: MockBackend.layer, observe: () => stateFiles(options) }),
      setup: pod(),
      invoke: (ns) => invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })
    }))
    expect(invocationRunsNotFailedAtTheirFault(report)).toEqual([])
    for (const run of report.runs) expect({ k: run.k, files: run.observedAfter }).toEqual({ k: run.k, files: [] })
    // 2 sysctl reads + getLink (plan), 2 sysctl writes, 5 × (getLink + setLink)
    expect(report.runs).toHaveLength(15)
    expect(report.clean.output.exitCode).toBe(0)
  })

  test("a state file that cannot be written fails ADD (code 5) before any change", async () => {
    const options = fresh()
    writeFileSync(options.dataDir, "not a directory")
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod()
      const before = mock.snapshot()
      const add = yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })
      expect([add.exitCode, add.json!.code]).toEqual([1, 5])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("bad configuration is code 7 naming the field, with no change", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod()
      const before = mock.snapshot()
      const prev = prevResult(ns)
      const cases: Array<[Json, Record<string, string>, string]> = [
        [{ ...CONF, prevResult: prev, sysctl: { "kernel.hostname": "x" } }, {}, "kernel.hostname"],
        [{ ...CONF, prevResult: prev, sysctl: { "net.ipv4.conf.eth0.arp_notify": "1", "net.ipv4.conf.IFNAME.arp_notify": "2" } }, {}, "second time"],
        [{ ...CONF, prevResult: prev, sysctl: { "net.core.somaxconn": 5 } }, {}, "sysctl"],
        [{ ...CONF, prevResult: prev, sysctl: { "net/../kernel/x": "1" } }, {}, "net/../kernel/x"],
        [{ ...CONF, prevResult: prev, mac: "01:00:5e:00:00:01" }, {}, "mac"],
        [{ ...CONF, prevResult: prev, mtu: 10 }, {}, "mtu"],
        [{ ...CONF, prevResult: prev, txQLen: -1 }, {}, "txQLen"],
        [{ ...CONF, prevResult: prev, promisc: "yes" }, {}, "promisc"],
        [{ ...CONF, prevResult: prev, args: { cni: { mtu: 1.5 } } }, {}, "args.cni.mtu"],
        [{ ...CONF, prevResult: prev, runtimeConfig: { mac: "zz" } }, {}, "runtimeConfig.mac"],
        [{ ...CONF, prevResult: prev, dataDir: "relative" }, {}, "dataDir"],
        [{ ...CONF, prevResult: prev, sysctl: { "net.ipv4.conf.IFNAME.no_such_knob": "1" } }, {}, "no_such_knob"],
        [CONF, {}, "prevResult"]
      ]
      for (const [conf, extraEnv, field] of cases) {
        const out = yield* invoke(options, env("ADD", ns, "c1", extraEnv), conf)
        expect({ field, exit: out.exitCode, code: out.json!.code }).toEqual({ field, exit: 1, code: 7 })
        expect(out.json!.msg).toContain(field)
      }
      // a bad CNI_ARGS MAC is an environment problem: code 4 naming CNI_ARGS
      const badArgs = yield* invoke(options, env("ADD", ns, "c1", { CNI_ARGS: "MAC=nope" }), { ...CONF, prevResult: prev })
      expect([badArgs.exitCode, badArgs.json!.code, badArgs.json!.msg]).toEqual([1, 4, expect.stringContaining("CNI_ARGS")])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect(stateFiles(options)).toEqual([])
    }))
  })

  test("the allowlist file, when present, admits only the keys one of its patterns matches", async () => {
    const options = fresh()
    writeFileSync(options.allowlistPath, "^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]+$\n\n  ^net\\.ipv4\\.conf\\.all\\.route_localnet$  \n")
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod()
      const allowed = yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })
      expect(allowed.exitCode).toBe(0)
      expect((yield* invoke(options, env("DEL", ns), CONF)).exitCode).toBe(0)
      const before = mock.snapshot()
      const refused = yield* invoke(options, env("ADD", ns), {
        ...CONF,
        sysctl: { "net.ipv4.ip_forward": "1" },
        prevResult: prevResult(ns)
      })
      expect([refused.exitCode, refused.json!.code]).toEqual([1, 7])
      expect(refused.json!.msg).toContain("net.ipv4.ip_forward")
      expect(refused.json!.msg).toContain(options.allowlistPath)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      writeFileSync(options.allowlistPath, "([unclosed\n")
      const broken = yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })
      expect([broken.exitCode, broken.json!.code]).toEqual([1, 7])
    }))
  })

  test("DEL without a state file, twice, with no namespace and with the namespace gone", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod()
      const calls = mock.calls().length
      const never = yield* invoke(options, env("DEL", ns), CONF)
      expect([never.exitCode, never.stdout]).toEqual([0, ""])
      expect(mock.calls().length).toBe(calls) // nothing to restore: the kernel is not touched

      // ADD, then DEL with CNI_NETNS empty: nothing can be restored, the state goes
      expect((yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })).exitCode).toBe(0)
      expect((yield* invoke(options, env("DEL", ""), CONF)).exitCode).toBe(0)
      expect(stateFiles(options)).toEqual([])

      // ADD on a second pod, namespace deleted, then DEL twice
      const ns2 = yield* pod("p2")
      expect((yield* invoke(options, env("ADD", ns2, "c2"), { ...CONF, prevResult: prevResult(ns2) })).exitCode).toBe(0)
      yield* backend.deleteNetns(ns2)
      for (let i = 0; i < 2; i++) {
        const del = yield* invoke(options, env("DEL", ns2, "c2"), CONF)
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(stateFiles(options)).toEqual([])
    }))
  })

  test("DEL drops the temp file an ADD killed before its rename left, and no other attachment's", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const ns = yield* pod()
      const dir = join(options.dataDir, NETWORK)
      yield* Effect.sync(() => {
        mkdirSync(dir, { recursive: true })
        writeFileSync(join(dir, `${attachmentKey("c1", "eth0")}.json.123.0.tmp`), "{")
        writeFileSync(join(dir, `${attachmentKey("c11", "eth0")}.json.123.1.tmp`), "{")
      })
      expect((yield* invoke(options, env("DEL", ns), CONF)).exitCode).toBe(0)
      expect(stateFiles(options)).toEqual([`${attachmentKey("c11", "eth0")}.json.123.1.tmp`])
    }))
  })

  test("a state file DEL cannot use fails it (code 5, naming the file and why) while the pod exists, and is kept; the kernel is untouched", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod()
      expect((yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })).exitCode).toBe(0)
      const path = statePath(options.dataDir, NETWORK, "c1", "eth0")
      const good = readFileSync(path, "utf8")
      const record = JSON.parse(good) as Json
      // not JSON; not a state record; a record with one entry that does not decode
      for (const [what, text] of [
        ["not JSON", "{ not json"],
        ["not a state record", JSON.stringify({ containerId: "c1" })],
        ["entry sysctls", JSON.stringify({ ...record, handles: { ...record.handles, sysctls: [{ key: 7 }] } })]
      ] as const) {
        writeFileSync(path, text)
        const before = mock.snapshot()
        const del = yield* invoke(options, env("DEL", ns), CONF)
        expect({ what, code: del.exitCode, json: del.json }).toEqual({
          what,
          code: 1,
          json: expect.objectContaining({ code: 5, msg: expect.stringContaining(`${path} cannot be used (`) })
        })
        expect(String(del.json?.msg)).toContain(what)
        expect(mock.diff(before, mock.snapshot())).toEqual([])
        expect(readFileSync(path, "utf8")).toBe(text)
      }
      // put right by the operator: DEL restores and removes it
      writeFileSync(path, good)
      expect((yield* invoke(options, env("DEL", ns), CONF)).exitCode).toBe(0)
      expect(stateFiles(options)).toEqual([])
    }))
  })

  test("a state file DEL cannot use, the pod's namespace gone: nothing to restore, it is removed with a warning", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod()
      expect((yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })).exitCode).toBe(0)
      writeFileSync(statePath(options.dataDir, NETWORK, "c1", "eth0"), "{ not json")
      yield* backend.deleteNetns(ns)
      for (const netns of [ns, ""]) {
        const del = yield* invoke(options, env("DEL", netns), CONF)
        expect(del.exitCode).toBe(0)
      }
      expect(stateFiles(options)).toEqual([])
    }))
  })
})

describe("tuning CHECK, GC, STATUS and versions on the mock kernel", () => {
  test("CHECK of a container whose namespace is gone is code 3 (container unknown), not a failed check", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const check = yield* invoke(options, env("CHECK", "/var/run/netns/gone"), { ...CONF, prevResult: prevResult("/var/run/netns/gone") })
      expect([check.exitCode, check.json?.code]).toEqual([1, 3])
    }))
  })

  test("CHECK passes after ADD and names what was changed by hand", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod()
      const add = yield* invoke(options, env("ADD", ns), { ...CONF, prevResult: prevResult(ns) })
      const check = () => invoke(options, env("CHECK", ns), { ...CONF, prevResult: add.json })
      expect((yield* check()).exitCode).toBe(0)

      yield* backend.writeSysctl(ns, "net.ipv4.conf.eth0.arp_notify", "0")
      const sysctl = yield* check()
      expect([sysctl.exitCode, sysctl.json!.msg]).toEqual([1, expect.stringContaining("net.ipv4.conf.eth0.arp_notify")])
      yield* backend.writeSysctl(ns, "net.ipv4.conf.eth0.arp_notify", "1")
      expect((yield* check()).exitCode).toBe(0)

      yield* backend.setLink(ns, "eth0", { mtu: 1500 })
      const mtu = yield* check()
      expect([mtu.exitCode, mtu.json!.msg]).toEqual([1, expect.stringContaining("mtu is 1500, expected 1400")])
      yield* backend.setLink(ns, "eth0", { mtu: 1400, txqlen: 1000 })
      const txqlen = yield* check()
      expect([txqlen.exitCode, txqlen.json!.msg]).toEqual([1, expect.stringContaining("txqlen")])
      yield* backend.setLink(ns, "eth0", { txqlen: 2000 })
      expect((yield* check()).exitCode).toBe(0)

      yield* backend.deleteLink(ns, "eth0")
      const gone = yield* invoke(options, env("CHECK", ns), { cniVersion: "1.0.0", name: NETWORK, type: "tuning", prevResult: add.json })
      expect([gone.exitCode, gone.json!.msg]).toEqual([1, expect.stringContaining("eth0 is missing")])
    }))
  })

  test("GC removes the state of attachments that are no longer valid, corrupt files and temp files", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      for (const id of ["c1", "c2", "c3"]) {
        const ns = yield* pod(`p-${id}`, id)
        expect((yield* invoke(options, env("ADD", ns, id), { ...CONF, prevResult: prevResult(ns) })).exitCode).toBe(0)
      }
      const dir = join(options.dataDir, NETWORK)
      writeFileSync(join(dir, "junk.json"), "[]")
      writeFileSync(join(dir, `${attachmentKey("c9", "eth0")}.json.1.0.tmp`), "{")
      expect(stateFiles(options).sort()).toEqual([`${attachmentKey("c1", "eth0")}.json`, `${attachmentKey("c2", "eth0")}.json`, `${attachmentKey("c3", "eth0")}.json`, `${attachmentKey("c9", "eth0")}.json.1.0.tmp`, "junk.json"].sort())
      const gc = yield* invoke(options, { CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, {
        ...CONF,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "c2", ifname: "eth0" }, { containerID: "c3", ifname: "net1" }]
      })
      expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
      expect(stateFiles(options)).toEqual([`${attachmentKey("c2", "eth0")}.json`])
    }))
  })

  test("STATUS answers ready for a valid config and code 7 for a bad one", async () => {
    const options = fresh()
    await onMock(Effect.gen(function*() {
      const status = yield* invoke(options, { CNI_COMMAND: "STATUS" }, { ...CONF, cniVersion: "1.1.0" })
      expect([status.exitCode, status.stdout]).toEqual([0, ""])
      const bad = yield* invoke(options, { CNI_COMMAND: "STATUS" }, { ...CONF, cniVersion: "1.1.0", mtu: "x" })
      expect([bad.exitCode, bad.json!.code]).toEqual([1, 7])
    }))
  })

  for (const version of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    test(`cniVersion ${version}: prevResult comes back in that version with the new MAC`, async () => {
      const options = fresh()
      await onMock(Effect.gen(function*() {
        const ns = yield* pod()
        const conf = { ...CONF, cniVersion: version }
        const add = yield* invoke(options, env("ADD", ns), { ...conf, prevResult: prevResult(ns, version) })
        expect(add.exitCode).toBe(0)
        expect(add.json!.cniVersion).toBe(version)
        expect(add.json!.interfaces[1]).toEqual({ name: "eth0", mac: "c2:b0:57:49:47:f1", sandbox: ns })
        expect(add.json!.ips[0].version).toBe(version < "1.0.0" ? "4" : undefined)
        if (version >= "0.4.0") expect((yield* invoke(options, env("CHECK", ns), { ...conf, prevResult: add.json })).exitCode).toBe(0)
        expect((yield* invoke(options, env("DEL", ns), { ...conf, prevResult: add.json })).exitCode).toBe(0)
        expect(stateFiles(options)).toEqual([])
      }))
    })
  }
})

describe("sysctl keys", () => {
  test("IFNAME, separators, and interface names with dots", () => {
    expect(resolveSysctlKey("net.ipv4.conf.IFNAME.arp_notify", "eth0")).toBe("net.ipv4.conf.eth0.arp_notify")
    expect(resolveSysctlKey("net/ipv6/conf/IFNAME/accept_dad", "eth0")).toBe("net.ipv6.conf.eth0.accept_dad")
    expect(resolveSysctlKey("net.ipv4.conf.IFNAME.arp_notify", "eth0.100")).toBe("net/ipv4/conf/eth0.100/arp_notify")
    expect(resolveSysctlKey("net.core.somaxconn", "eth0")).toBe("net.core.somaxconn")
    for (const bad of ["kernel.pid_max", "net", "net..x", "net/../kernel", "vm.swappiness", ""]) {
      expect({ bad, key: resolveSysctlKey(bad, "eth0") }).toEqual({ bad, key: undefined })
    }
  })
})
