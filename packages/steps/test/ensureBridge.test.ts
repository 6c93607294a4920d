import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { ensureBridge } from "../src/index.ts"
import { control, failureOf, linkAddedLines, onKernel, stepContract } from "./harness.ts"

const input = { netns: HOST_NETNS, name: "cni0", mtu: 1450 }

describe("ensureBridge", () => {
  stepContract({
    step: ensureBridge,
    prepare: Effect.succeed(input),
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ netns: HOST_NETNS, name: "cni0", index: handle.index, mac: handle.mac, created: true })
      expect(diff).toEqual(linkAddedLines(HOST_NETNS, "cni0", "bridge", handle.index))
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const bridge = yield* Backend.use((backend) => backend.getLink(handle.netns, handle.name))
        expect([bridge.kind, bridge.index, bridge.up, bridge.mtu]).toEqual(["bridge", handle.index, true, 1450])
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteLink(handle.netns, handle.name)),
    breakByHand: (handle) =>
      Backend.use((backend) =>
        backend.deleteLink(handle.netns, handle.name).pipe(
          Effect.andThen(backend.createLink({ netns: handle.netns, name: handle.name, kind: "dummy" }))
        )
      )
  })

  test("an existing bridge is adopted (created=false), left as it is, and never removed by undo", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      const existing = yield* backend.createLink({ netns: HOST_NETNS, name: "cni0", kind: "bridge" })
      const before = mock.snapshot()
      const handle = yield* ensureBridge.apply(input)
      expect(handle).toEqual({ netns: HOST_NETNS, name: "cni0", index: existing.index, mac: existing.mac, created: false })
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* ensureBridge.check(handle)
      yield* ensureBridge.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("a non-bridge link with the name is an AlreadyExists error and is left alone", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      yield* backend.createLink({ netns: HOST_NETNS, name: "cni0", kind: "dummy" })
      const before = mock.snapshot()
      const error = failureOf(yield* Effect.exit(ensureBridge.apply(input)))
      expect(error?.reason).toBe("AlreadyExists")
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("undo keeps a bridge it created while other ports are still on it", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      const handle = yield* ensureBridge.apply(input)
      yield* backend.createLink({ netns: HOST_NETNS, name: "dummy0", kind: "dummy" })
      yield* backend.setLink(HOST_NETNS, "dummy0", { master: "cni0" })
      const before = mock.snapshot()
      yield* ensureBridge.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* backend.setLink(HOST_NETNS, "dummy0", { master: null })
      yield* ensureBridge.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([
        `${HOST_NETNS}: - link cni0 (bridge, index ${handle.index})`,
        `${HOST_NETNS}: ~ link dummy0 bridgePort: {"hairpin":false,"isolated":false} → (none)`,
        `${HOST_NETNS}: ~ link dummy0 master: ${handle.index} → (none)`,
        ...[
          "net.ipv4.conf.cni0.arp_notify (was 0)",
          "net.ipv4.conf.cni0.route_localnet (was 0)",
          "net.ipv6.conf.cni0.accept_dad (was 1)",
          "net.ipv6.conf.cni0.disable_ipv6 (was 0)"
        ].map((sysctl) => `${HOST_NETNS}: - sysctl ${sysctl}`)
      ])
    }))
  })

  test("undo leaves a same-named bridge that replaced the one it created", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      const handle = yield* ensureBridge.apply(input)
      yield* backend.createLink({ netns: HOST_NETNS, name: "dummy0", kind: "dummy" })
      yield* backend.deleteLink(HOST_NETNS, "cni0")
      yield* backend.createLink({ netns: HOST_NETNS, name: "cni0", kind: "bridge" })
      const before = mock.snapshot()
      yield* ensureBridge.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})
