import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { setSysctl, type SetSysctlInput } from "../src/index.ts"
import { control, onKernel, stepContract } from "./harness.ts"

const POD = "/var/run/netns/pod1"

const prepare = Effect.gen(function*() {
  const netns = yield* Backend.use((backend) => backend.createNetns("pod1"))
  const input: SetSysctlInput = { netns, key: "net.ipv4.ip_forward", value: "1" }
  return input
})

describe("setSysctl", () => {
  stepContract({
    step: setSysctl,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ netns: POD, key: "net.ipv4.ip_forward", value: "1", previous: "0", restoreOnUndo: true })
      expect(diff).toEqual([`${POD}: ~ sysctl net.ipv4.ip_forward: 0 → 1`])
    },
    observe: (handle) =>
      Effect.gen(function*() {
        expect(yield* Backend.use((backend) => backend.readSysctl(handle.netns, handle.key))).toBe("1")
      }),
    // a namespace's sysctls go away with it
    removeByHand: (handle) => Backend.use((backend) => backend.deleteNetns(handle.netns)),
    breakByHand: (handle) => Backend.use((backend) => backend.writeSysctl(handle.netns, handle.key, "0"))
  })

  test("restoreOnUndo=false leaves a host-wide switch as it is", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const before = mock.snapshot()
      const handle = yield* setSysctl.apply({ netns: HOST_NETNS, key: "net.ipv4.ip_forward", value: "1", restoreOnUndo: false })
      expect(handle.restoreOnUndo).toBe(false)
      yield* setSysctl.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([`${HOST_NETNS}: ~ sysctl net.ipv4.ip_forward: 0 → 1`])
    }))
  })

  test("a value that was already set is recorded as previous and restored as such", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      yield* Backend.use((backend) => backend.writeSysctl(HOST_NETNS, "net.ipv4.ip_forward", "1"))
      const before = mock.snapshot()
      const handle = yield* setSysctl.apply({ netns: HOST_NETNS, key: "net.ipv4.ip_forward", value: "1" })
      expect(handle.previous).toBe("1")
      yield* setSysctl.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})
