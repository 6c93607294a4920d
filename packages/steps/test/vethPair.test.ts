import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { vethPair, type VethPairInput } from "../src/index.ts"
import { control, failureOf, linkAddedLines, onKernel, stepContract } from "./harness.ts"

const POD = "/var/run/netns/pod1"

const prepare = Effect.gen(function*() {
  const backend = yield* Backend
  const peerNetns = yield* backend.createNetns("pod1")
  const input: VethPairInput = {
    netns: HOST_NETNS,
    name: "veth1",
    peerNetns,
    peerName: "eth0",
    mtu: 1400,
    peerMac: "02:00:00:00:00:aa"
  }
  return input
})

describe("vethPair", () => {
  stepContract({
    step: vethPair,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toMatchObject({ netns: HOST_NETNS, name: "veth1", peer: { netns: POD, name: "eth0", mac: "02:00:00:00:00:aa" } })
      expect(diff).toEqual([
        ...linkAddedLines(POD, "eth0", "veth", handle.peer.index),
        ...linkAddedLines(HOST_NETNS, "veth1", "veth", handle.index)
      ])
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const backend = yield* Backend
        const link = yield* backend.getLink(handle.netns, handle.name)
        const peer = yield* backend.getLink(handle.peer.netns, handle.peer.name)
        expect([link.index, link.mac, link.mtu, link.peerIndex]).toEqual([handle.index, handle.mac, 1400, handle.peer.index])
        expect([peer.index, peer.mac, peer.mtu, peer.peerIndex]).toEqual([handle.peer.index, handle.peer.mac, 1400, handle.index])
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteLink(handle.netns, handle.name)),
    breakByHand: (handle) => Backend.use((backend) => backend.deleteLink(handle.peer.netns, handle.peer.name))
  })

  test("undo deletes the peer end when the host end is gone (moved away by hand)", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      const input = yield* prepare
      const elsewhere = yield* backend.createNetns("other")
      const before = mock.snapshot()
      const handle = yield* vethPair.apply(input)
      yield* backend.moveLink(HOST_NETNS, "veth1", elsewhere, "stray0")
      yield* vethPair.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("check fails when both names exist but are not each other's peer", () => {
    onKernel(Effect.gen(function*() {
      const backend = yield* Backend
      const input = yield* prepare
      const handle = yield* vethPair.apply(input)
      yield* backend.deleteLink(HOST_NETNS, "veth1")
      yield* backend.createVeth({ netns: HOST_NETNS, name: "veth1", peerNetns: HOST_NETNS, peerName: "vethx" })
      yield* backend.createVeth({ netns: POD, name: "eth0", peerNetns: POD, peerName: "ethx" })
      const error = failureOf(yield* Effect.exit(vethPair.check(handle)))
      expect(error?._tag === "CheckFailed" && error.message).toContain("are not peers")
    }))
  })
})
