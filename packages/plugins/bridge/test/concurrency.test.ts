/**
 * Two pods' first ADDs on a new network at the same time, one failing at its very last
 * step: what they share (bridge, gateway address, host forwarding and bridge-nf switches)
 * must stay as the pod that succeeded needs it. The interleaving is made on purpose: the
 * failing ADD is held at its last Backend call (after it turned forwarding on and added
 * the gateway) while the other ADD runs to the end, then released into its fault.
 */
import { describe, expect, test } from "bun:test"
import { Deferred, Effect, Fiber, Layer } from "effect"
import { Backend, BackendError, type BackendShape, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { handleInvocation } from "@tscni/skel"
import { attachmentEnv } from "@tscni/skel/testing"
import { makeFakeIpam } from "@tscni/steps/testing/fakeIpam"
import { makeFakePluginExec } from "@tscni/steps/testing/fakePluginExec"
import { bridgePlugin, hostVethName } from "../src/index.ts"
import { CONF } from "./fixtures.ts"

type Json = Record<string, any>

const invoke = (env: Record<string, string>, conf: Json) => handleInvocation(bridgePlugin, { env, stdin: Effect.succeed(JSON.stringify(conf)) })

const LAST_CALL = "net.bridge.bridge-nf-call-iptables"

/** The real mock backend, but the call writing `LAST_CALL` waits for `release` (after saying it got there) and then fails. */
const heldAtLastCall = (backend: BackendShape, reached: Deferred.Deferred<void>, release: Deferred.Deferred<void>): BackendShape => ({
  ...backend,
  writeSysctl: (netns, key, value) =>
    netns === HOST_NETNS && key === LAST_CALL
      ? Effect.gen(function*() {
        yield* Deferred.succeed(reached, undefined)
        yield* Deferred.await(release)
        return yield* new BackendError({ operation: "writeSysctl", reason: "Injected", message: `writeSysctl ${key}: injected fault` })
      })
      : backend.writeSysctl(netns, key, value)
})

describe("bridge: concurrent first ADDs where one fails", () => {
  test("the failed ADD leaves forwarding, bridge-nf, the gateway and the bridge to the pod that succeeded; only its own things go", async () => {
    const ipam = makeFakeIpam("10.88.0")
    const layer = Layer.mergeAll(MockBackend.layer, makeFakePluginExec({ "fake-ipam": ipam.plugin }).layer)
    const outcome = await Effect.runPromise(Effect.gen(function*() {
      const backend = yield* Backend
      const first = yield* backend.createNetns("p1")
      const second = yield* backend.createNetns("p2")
      const reached = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // the failing ADD: it creates the bridge, the gateway, turns forwarding on, and is held
      const failing = yield* Effect.forkChild(
        invoke(attachmentEnv("ADD", "c1", first), CONF).pipe(Effect.provideService(Backend, heldAtLastCall(backend, reached, release)))
      )
      yield* Deferred.await(reached)
      const held = {
        forwarding: yield* backend.readSysctl(HOST_NETNS, "net.ipv4.ip_forward"),
        gateway: (yield* backend.listAddresses(HOST_NETNS, "br-test")).map((a) => a.cidr)
      }
      // the other pod's whole ADD, while the first one holds
      const add = yield* invoke(attachmentEnv("ADD", "c2", second), CONF)
      yield* Deferred.succeed(release, undefined)
      const failed = yield* Fiber.join(failing)
      const check = yield* invoke(attachmentEnv("CHECK", "c2", second), { ...CONF, prevResult: JSON.parse(add.stdout) })
      const veths = (yield* backend.listLinks(HOST_NETNS)).filter((link) => link.kind === "veth").map((link) => link.name)
      return {
        held,
        failed: [failed.exitCode, JSON.parse(failed.stdout).msg],
        add: add.exitCode,
        check: [check.exitCode, check.stdout],
        switches: {
          forwarding: yield* backend.readSysctl(HOST_NETNS, "net.ipv4.ip_forward"),
          bridgeNf: yield* backend.readSysctl(HOST_NETNS, LAST_CALL)
        },
        gateway: (yield* backend.listAddresses(HOST_NETNS, "br-test")).map((a) => a.cidr),
        veths
      }
    }).pipe(Effect.provide(layer)))
    expect(outcome).toEqual({
      // the failing ADD had made the shared things before it was held
      held: { forwarding: "1", gateway: ["10.88.0.1/24"] },
      failed: [1, expect.stringContaining("injected fault")],
      add: 0,
      // by its own CHECK (bridge, gateway, forwarding and bridge-nf included) the other pod is whole
      check: [0, ""],
      switches: { forwarding: "1", bridgeNf: "1" },
      gateway: ["10.88.0.1/24"],
      // the failed pod's veth is gone, the other's stays
      veths: [hostVethName("c2", "eth0")]
    })
    // and its IP went back to the pool
    expect([...ipam.allocations()].map(([attachment]) => attachment)).toEqual(["c2/eth0"])
  })
})
