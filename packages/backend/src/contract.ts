import { describe, expect, test } from "bun:test"
import { Effect, type Layer, Schedule, type Scope } from "effect"
import { Backend, type BackendShape } from "./Backend.ts"
import type { BackendError, BackendErrorReason } from "./errors.ts"
import { IPTABLES_JUMP_COMMENT } from "./iptables.ts"
import { type BridgeVlan, type FilterRule, type IptablesBatch, type IptablesChain, type IptablesPodBatch, type IptablesTable, type LinkInfo, type NetnsPath, ROUTE_PROTOCOL_TSCNI, type Route, sysctlKey } from "./model.ts"
import type { NftElement, NftTable } from "./nftSets.ts"

/**
 * How the contract gets namespaces to work in. Every test works only inside namespaces
 * it got from here (and ones it creates with createNetns), so the suite can run against
 * the real kernel without touching the host's own interfaces.
 */
export interface BackendContractOptions {
  /** a new namespace, holding only what the kernel puts in a new namespace */
  readonly freshNetns: () => Effect.Effect<NetnsPath, unknown, Backend>
  /** removes a namespace from `freshNetns`; must tolerate one that is already gone */
  readonly cleanupNetns: (path: NetnsPath) => Effect.Effect<void, unknown, Backend>
  /**
   * Whether the backend must support bridge VLAN filtering. Unset: either is fine (the
   * kernel decides), as long as an unsupported one says Unsupported and changes nothing.
   */
  readonly bridgeVlans?: "supported" | "unsupported"
}

let counter = 0
/** A namespace name no other test (or concurrent run) uses. */
export const uniqueNetnsName = (): string => `tscni-ct-${process.pid}-${++counter}`

/** Fresh namespaces made and removed through the Backend itself (createNetns / deleteNetns). */
export const netnsThroughBackend: BackendContractOptions = {
  freshNetns: () => Backend.use((backend) => backend.createNetns(uniqueNetnsName())),
  cleanupNetns: (path) =>
    Backend.use((backend) => backend.deleteNetns(path).pipe(Effect.catchTag("BackendError", () => Effect.void)))
}

/** The reason an operation failed with, or "succeeded". */
const reasonOf = <A>(effect: Effect.Effect<A, BackendError>): Effect.Effect<BackendErrorReason | "succeeded"> =>
  effect.pipe(
    Effect.as("succeeded" as const),
    Effect.catchTag("BackendError", (error) => Effect.succeed(error.reason))
  )

const expectReason = <A>(effect: Effect.Effect<A, BackendError>, reason: BackendErrorReason): Effect.Effect<void> =>
  Effect.map(reasonOf(effect), (actual) => {
    expect(actual).toBe(reason)
  })

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

/** A MAC the kernel would generate: well formed, unicast, locally administered. */
const expectGeneratedMac = (mac: string): void => {
  expect(mac).toMatch(MAC)
  const first = Number.parseInt(mac.slice(0, 2), 16)
  expect(first & 1).toBe(0)
  expect(first & 2).toBe(2)
}

/** True when some route has every given field; a field given as undefined must be absent. */
const hasRoute = (routes: ReadonlyArray<Route>, wanted: { readonly [K in keyof Route]?: Route[K] | undefined }): boolean =>
  routes.some((route) =>
    Object.entries(wanted).every(([key, value]) => JSON.stringify(Reflect.get(route, key)) === JSON.stringify(value))
  )

const linkNames = (links: ReadonlyArray<LinkInfo>): Array<string> => links.map((l) => l.name)

/**
 * The behaviour every Backend must show, as bun:test cases. The same suite runs against
 * MockBackend and LinuxBackend, so the mock cannot drift from the kernel: whatever a step
 * relies on in a unit test on the mock is pinned here.
 */
export const runBackendContract = (
  name: string,
  makeLayer: () => Layer.Layer<Backend>,
  options: BackendContractOptions
): void => {
  /** a fresh namespace for this test, removed when the test ends */
  const netns: Effect.Effect<NetnsPath, unknown, Backend | Scope.Scope> = Effect.acquireRelease(
    options.freshNetns(),
    (path) => Effect.ignore(options.cleanupNetns(path))
  )

  const it = (title: string, body: (backend: BackendShape) => Effect.Effect<void, unknown, Backend | Scope.Scope>) =>
    test(title, () =>
      Effect.runPromise(
        Effect.gen(function* () {
          yield* body(yield* Backend)
        }).pipe(Effect.scoped, Effect.provide(makeLayer()))
      )
    )

  /** retries a check for a while: the kernel tears namespaces down asynchronously */
  const eventually = <A, E, R>(check: Effect.Effect<A, E, R>) =>
    Effect.retry(check, { schedule: Schedule.spaced("50 millis"), times: 60 })

  describe(`Backend contract: ${name}`, () => {
    describe("namespaces", () => {
      it("a fresh namespace exists and has lo, down", (backend) =>
        Effect.gen(function* () {
          const ns = yield* netns
          expect(yield* backend.netnsExists(ns)).toBe(true)
          const lo = yield* backend.getLink(ns, "lo")
          expect(lo.kind).toBe("loopback")
          expect(lo.up).toBe(false)
          expect(lo.netns).toBe(ns)
        }))

      it("createNetns refuses an existing name; deleteNetns removes it, then NotFound", (backend) =>
        Effect.gen(function* () {
          const name = uniqueNetnsName()
          const ns = yield* Effect.acquireRelease(backend.createNetns(name), (path) =>
            Effect.ignore(backend.deleteNetns(path))
          )
          yield* expectReason(backend.createNetns(name), "AlreadyExists")
          yield* backend.deleteNetns(ns)
          expect(yield* backend.netnsExists(ns)).toBe(false)
          yield* expectReason(backend.deleteNetns(ns), "NotFound")
          yield* expectReason(backend.listLinks(ns), "NotFound")
        }))

      it("deleteNetns destroys its links, including veth peers in other namespaces", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* Effect.acquireRelease(backend.createNetns(uniqueNetnsName()), (path) =>
            Effect.ignore(backend.deleteNetns(path))
          )
          yield* backend.createVeth({ netns: a, name: "ct-v0", peerNetns: b, peerName: "eth0" })
          yield* backend.deleteNetns(b)
          expect(yield* backend.netnsExists(b)).toBe(false)
          yield* eventually(
            Effect.flatMap(backend.listLinks(a), (links) =>
              linkNames(links).includes("ct-v0") ? Effect.fail("ct-v0 still there") : Effect.void
            )
          )
        }))
    })

    describe("links", () => {
      it("createVeth creates the peer directly in the peer namespace and links both ends", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          const { link, peer } = yield* backend.createVeth({ netns: a, name: "ct-veth0", peerNetns: b, peerName: "eth0" })
          expect(link).toMatchObject({ netns: a, name: "ct-veth0", kind: "veth", up: false, mtu: 1500 })
          expect(peer).toMatchObject({ netns: b, name: "eth0", kind: "veth", up: false, mtu: 1500 })
          expect(link.peerIndex).toBe(peer.index)
          expect(peer.peerIndex).toBe(link.index)
          expectGeneratedMac(link.mac)
          expectGeneratedMac(peer.mac)
          expect(link.mac).not.toBe(peer.mac)
          expect(yield* backend.getLink(a, "ct-veth0")).toEqual(link)
          expect(yield* backend.getLink(b, "eth0")).toEqual(peer)
          expect(linkNames(yield* backend.listLinks(a))).not.toContain("eth0")
          expect(linkNames(yield* backend.listLinks(b))).not.toContain("ct-veth0")
        }))

      it("getLinkByIndex finds a link by its ifindex (a veth's peerIndex); listBridgePorts lists one bridge's ports only", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          const { link, peer } = yield* backend.createVeth({ netns: a, name: "ct-ix0", peerNetns: b, peerName: "eth0" })
          expect(yield* backend.getLinkByIndex(a, peer.peerIndex!)).toEqual(link)
          yield* expectReason(backend.getLinkByIndex(a, 999_999), "NotFound")
          for (const bridge of ["ct-pb0", "ct-pb1"]) yield* backend.createLink({ netns: a, name: bridge, kind: "bridge" })
          for (const [port, bridge] of [["ct-pp0", "ct-pb0"], ["ct-pp1", "ct-pb0"], ["ct-pp2", "ct-pb1"]] as const) {
            yield* backend.createVeth({ netns: a, name: port, peerNetns: a, peerName: `${port}p` })
            yield* backend.setLink(a, port, { master: bridge })
          }
          expect(linkNames(yield* backend.listBridgePorts(a, "ct-pb0")).sort()).toEqual(["ct-pp0", "ct-pp1"])
          expect(linkNames(yield* backend.listBridgePorts(a, "ct-pb1"))).toEqual(["ct-pp2"])
          yield* backend.setLink(a, "ct-pp2", { master: null })
          expect(yield* backend.listBridgePorts(a, "ct-pb1")).toEqual([])
          yield* expectReason(backend.listBridgePorts(a, "ct-nobridge"), "NotFound")
        }))

      it("createVeth honours mtu and MACs", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          const { link, peer } = yield* backend.createVeth({
            netns: a,
            name: "ct-veth1",
            peerNetns: b,
            peerName: "eth0",
            mtu: 1400,
            mac: "02:00:00:00:01:01",
            peerMac: "02:00:00:00:01:02"
          })
          expect([link.mtu, peer.mtu]).toEqual([1400, 1400])
          expect([link.mac, peer.mac]).toEqual(["02:00:00:00:01:01", "02:00:00:00:01:02"])
        }))

      it("link names are unique per namespace", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          const dummy = yield* backend.createLink({ netns: a, name: "ct-d0", kind: "ifb" })
          expect(dummy).toMatchObject({ name: "ct-d0", kind: "ifb", up: false, mtu: 1500 })
          yield* expectReason(backend.createLink({ netns: a, name: "ct-d0", kind: "ifb" }), "AlreadyExists")
          yield* expectReason(backend.createLink({ netns: a, name: "ct-d0", kind: "bridge" }), "AlreadyExists")
          yield* expectReason(backend.createVeth({ netns: a, name: "ct-d0", peerNetns: b, peerName: "x0" }), "AlreadyExists")
          yield* backend.createLink({ netns: b, name: "ct-d0", kind: "ifb" })
        }))

      it("createVeth with a taken peer name creates nothing", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          yield* backend.createLink({ netns: b, name: "taken", kind: "ifb" })
          yield* expectReason(
            backend.createVeth({ netns: a, name: "ct-v1", peerNetns: b, peerName: "taken" }),
            "AlreadyExists"
          )
          yield* expectReason(backend.getLink(a, "ct-v1"), "NotFound")
          expect((yield* backend.getLink(b, "taken")).kind).toBe("ifb")
        }))

      it("interface names have 1 to 15 characters, no '/' and no whitespace", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* expectReason(backend.createLink({ netns: a, name: "a".repeat(16), kind: "ifb" }), "Invalid")
          yield* expectReason(backend.createLink({ netns: a, name: "", kind: "ifb" }), "Invalid")
          yield* expectReason(backend.createLink({ netns: a, name: "a/b", kind: "ifb" }), "Invalid")
          yield* expectReason(backend.createLink({ netns: a, name: "a b", kind: "ifb" }), "Invalid")
          const b = yield* netns
          yield* expectReason(
            backend.createVeth({ netns: a, name: "ct-v2", peerNetns: b, peerName: "p".repeat(16) }),
            "Invalid"
          )
          yield* expectReason(backend.getLink(a, "ct-v2"), "NotFound")
          expect((yield* backend.createLink({ netns: a, name: "a".repeat(15), kind: "ifb" })).name).toBe("a".repeat(15))
        }))

      it("operations on a missing link fail with NotFound", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          yield* expectReason(backend.getLink(a, "nope"), "NotFound")
          yield* expectReason(backend.deleteLink(a, "nope"), "NotFound")
          yield* expectReason(backend.setLink(a, "nope", { up: true }), "NotFound")
          yield* expectReason(backend.moveLink(a, "nope", b), "NotFound")
          yield* expectReason(backend.listAddresses(a, "nope"), "NotFound")
          yield* expectReason(backend.listQdiscs(a, "nope"), "NotFound")
        }))

      it("deleting either end of a veth deletes both", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          yield* backend.createVeth({ netns: a, name: "ct-v3", peerNetns: b, peerName: "eth0" })
          yield* backend.deleteLink(b, "eth0")
          yield* expectReason(backend.getLink(a, "ct-v3"), "NotFound")
          yield* expectReason(backend.getLink(b, "eth0"), "NotFound")
          yield* expectReason(backend.deleteLink(a, "ct-v3"), "NotFound")
        }))

      it("deleteLinksTogether deletes a bridge with its port (and the port's peer) at once, and nothing when a name is missing", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          yield* backend.createLink({ netns: a, name: "ct-tb", kind: "bridge" })
          yield* backend.createLink({ netns: a, name: "ct-keep", kind: "bridge" })
          yield* backend.createVeth({ netns: a, name: "ct-tv", peerNetns: b, peerName: "eth0" })
          yield* backend.setLink(a, "ct-tv", { master: "ct-tb", up: true })
          yield* expectReason(backend.deleteLinksTogether(a, ["ct-tv", "ct-tb", "ct-nope"]), "NotFound")
          // the loopback cannot be deleted: the kernel refuses the whole batch, nothing goes
          yield* expectReason(backend.deleteLinksTogether(a, ["ct-tv", "lo"]), "Unsupported")
          expect((yield* backend.getLink(a, "ct-tv")).master).toBe((yield* backend.getLink(a, "ct-tb")).index)
          yield* backend.deleteLinksTogether(a, ["ct-tv", "ct-tb"])
          yield* expectReason(backend.getLink(a, "ct-tv"), "NotFound")
          yield* expectReason(backend.getLink(a, "ct-tb"), "NotFound")
          yield* expectReason(backend.getLink(b, "eth0"), "NotFound")
          expect((yield* backend.getLink(a, "ct-keep")).kind).toBe("bridge")
        }))

      it("setLink changes up, mtu, mac and txqlen, and validates them", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          // a veth end: every kernel has veth, and it accepts a new MAC (ifb does not)
          yield* backend.createVeth({ netns: a, name: "ct-d1", peerNetns: a, peerName: "ct-d1p" })
          expect((yield* backend.setLink(a, "ct-d1", { up: true })).up).toBe(true)
          expect((yield* backend.getLink(a, "ct-d1")).up).toBe(true)
          const changed = yield* backend.setLink(a, "ct-d1", { mtu: 1400, mac: "02:aa:bb:cc:dd:ee", txqlen: 500 })
          expect(changed).toMatchObject({ mtu: 1400, mac: "02:aa:bb:cc:dd:ee", txqlen: 500 })
          expect(yield* backend.getLink(a, "ct-d1")).toEqual(changed)
          yield* expectReason(backend.setLink(a, "ct-d1", { mtu: 10 }), "Invalid")
          yield* expectReason(backend.setLink(a, "ct-d1", { mtu: 70000 }), "Invalid")
          yield* expectReason(backend.setLink(a, "ct-d1", { mac: "01:00:5e:00:00:01" }), "Invalid")
          expect((yield* backend.setLink(a, "ct-d1", { up: false })).up).toBe(false)
          expect((yield* backend.getLink(a, "ct-d1")).mtu).toBe(1400)
        }))

      it("setLink master enslaves to a bridge; port flags need a bridge port", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const bridge = yield* backend.createLink({ netns: a, name: "ct-br0", kind: "bridge" })
          yield* backend.createLink({ netns: a, name: "ct-d2", kind: "ifb" })
          yield* backend.createLink({ netns: a, name: "ct-d3", kind: "ifb" })
          yield* expectReason(backend.setLink(a, "ct-d2", { hairpin: true }), "Invalid")
          yield* expectReason(backend.setLink(a, "ct-d2", { master: "ct-d3" }), "Invalid")
          yield* expectReason(backend.setLink(a, "ct-d2", { master: "nope" }), "NotFound")
          const port = yield* backend.setLink(a, "ct-d2", { master: "ct-br0" })
          expect(port.master).toBe(bridge.index)
          expect(port.bridgePort).toEqual({ hairpin: false, isolated: false })
          expect((yield* backend.setLink(a, "ct-d2", { hairpin: true })).bridgePort).toEqual({
            hairpin: true,
            isolated: false
          })
          expect((yield* backend.setLink(a, "ct-d2", { isolated: true })).bridgePort).toEqual({
            hairpin: true,
            isolated: true
          })
          // a listing reports the same flags as a lookup by name
          const listed = (yield* backend.listLinks(a)).find((link) => link.name === "ct-d2")
          expect(listed?.bridgePort).toEqual({ hairpin: true, isolated: true })
          expect((yield* backend.listLinks(a)).find((link) => link.name === "ct-d3")?.bridgePort).toBeUndefined()
          const released = yield* backend.setLink(a, "ct-d2", { master: null })
          expect(released.master).toBeUndefined()
          expect(released.bridgePort).toBeUndefined()
        }))

      it("deleting a bridge releases its ports", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createLink({ netns: a, name: "ct-br1", kind: "bridge" })
          yield* backend.createLink({ netns: a, name: "ct-d4", kind: "ifb" })
          yield* backend.setLink(a, "ct-d4", { master: "ct-br1" })
          yield* backend.deleteLink(a, "ct-br1")
          const port = yield* backend.getLink(a, "ct-d4")
          expect(port.master).toBeUndefined()
          expect(port.bridgePort).toBeUndefined()
        }))

      it("moveLink moves a link (down, without addresses) and may rename it", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          yield* backend.createLink({ netns: a, name: "ct-d5", kind: "ifb", mtu: 1450 })
          yield* backend.setLink(a, "ct-d5", { up: true })
          yield* backend.addAddress(a, "ct-d5", "10.99.5.2/24")
          const moved = yield* backend.moveLink(a, "ct-d5", b, "eth1")
          expect(moved).toMatchObject({ netns: b, name: "eth1", kind: "ifb", up: false, mtu: 1450 })
          expect(yield* backend.getLink(b, "eth1")).toEqual(moved)
          yield* expectReason(backend.getLink(a, "ct-d5"), "NotFound")
          expect(yield* backend.listAddresses(b, "eth1")).toEqual([])
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "10.99.5.0/24" })).toBe(false)
        }))

      it("moveLink refuses a name taken in the target namespace and changes nothing", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          yield* backend.createLink({ netns: a, name: "ct-d6", kind: "ifb" })
          yield* backend.createLink({ netns: b, name: "eth2", kind: "ifb" })
          yield* expectReason(backend.moveLink(a, "ct-d6", b, "eth2"), "AlreadyExists")
          expect((yield* backend.getLink(a, "ct-d6")).kind).toBe("ifb")
        }))

      it("moving a veth end keeps the pair", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          yield* backend.createVeth({ netns: a, name: "ct-v4", peerNetns: a, peerName: "ct-v4p" })
          const moved = yield* backend.moveLink(a, "ct-v4p", b, "eth0")
          expect(moved.kind).toBe("veth")
          expect((yield* backend.getLink(a, "ct-v4")).peerIndex).toBe(moved.index)
          yield* backend.deleteLink(a, "ct-v4")
          yield* expectReason(backend.getLink(b, "eth0"), "NotFound")
        }))

      it("a link may carry an alias: set on create, changed, cleared with \"\", kept across a move", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const b = yield* netns
          const bridge = yield* backend.createLink({ netns: a, name: "ct-br2", kind: "bridge", alias: "tscni:ct-net" })
          expect(bridge.alias).toBe("tscni:ct-net")
          expect((yield* backend.getLink(a, "ct-br2")).alias).toBe("tscni:ct-net")
          expect((yield* backend.listLinks(a)).find((l) => l.name === "ct-br2")?.alias).toBe("tscni:ct-net")
          const plain = yield* backend.createLink({ netns: a, name: "ct-d14", kind: "ifb", alias: "" })
          expect("alias" in plain).toBe(false)
          expect((yield* backend.setLink(a, "ct-br2", { alias: "tscni:other" })).alias).toBe("tscni:other")
          const cleared = yield* backend.setLink(a, "ct-br2", { alias: "" })
          expect("alias" in cleared).toBe(false)
          expect(yield* backend.getLink(a, "ct-br2")).toEqual(cleared)
          // at most 255 bytes; a refused alias changes nothing and creates nothing
          expect((yield* backend.setLink(a, "ct-d14", { alias: "x".repeat(255) })).alias).toBe("x".repeat(255))
          yield* expectReason(backend.setLink(a, "ct-d14", { alias: "x".repeat(256) }), "Invalid")
          expect((yield* backend.getLink(a, "ct-d14")).alias).toBe("x".repeat(255))
          yield* expectReason(
            backend.createLink({ netns: a, name: "ct-d15", kind: "ifb", alias: "é".repeat(128) }),
            "Invalid"
          )
          yield* expectReason(backend.getLink(a, "ct-d15"), "NotFound")
          yield* backend.setLink(a, "ct-d14", { alias: "tscni:moving" })
          expect((yield* backend.moveLink(a, "ct-d14", b, "eth3")).alias).toBe("tscni:moving")
        }))

      it("a bridge reports vlanFiltering (off by default); other kinds neither have nor take it", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const bridge = yield* backend.createLink({ netns: a, name: "ct-br3", kind: "bridge" })
          expect(bridge.vlanFiltering).toBe(false)
          expect((yield* backend.createLink({ netns: a, name: "ct-br4", kind: "bridge", vlanFiltering: false })).vlanFiltering).toBe(
            false
          )
          const ifb = yield* backend.createLink({ netns: a, name: "ct-d16", kind: "ifb" })
          expect("vlanFiltering" in ifb).toBe(false)
          yield* expectReason(backend.createLink({ netns: a, name: "ct-d17", kind: "ifb", vlanFiltering: true }), "Invalid")
          yield* expectReason(backend.getLink(a, "ct-d17"), "NotFound")
        }))

      it("a MAC the kernel cannot assign is Invalid on create too, and creates nothing", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* expectReason(backend.createLink({ netns: a, name: "ct-d18", kind: "ifb", mac: "01:00:5e:00:00:01" }), "Invalid")
          yield* expectReason(
            backend.createVeth({ netns: a, name: "ct-v8", peerNetns: a, peerName: "ct-v8p", peerMac: "01:00:5e:00:00:02" }),
            "Invalid"
          )
          expect(linkNames(yield* backend.listLinks(a))).toEqual(["lo"])
        }))

      it("a bridge cannot be a port; releasing a port and setting port flags at once is refused", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createLink({ netns: a, name: "ct-br6", kind: "bridge" })
          yield* backend.createLink({ netns: a, name: "ct-br7", kind: "bridge" })
          yield* expectReason(backend.setLink(a, "ct-br6", { master: "ct-br7" }), "Invalid")
          yield* expectReason(backend.setLink(a, "lo", { master: "ct-br7" }), "Invalid")
          yield* backend.createLink({ netns: a, name: "ct-d19", kind: "ifb" })
          const port = yield* backend.setLink(a, "ct-d19", { master: "ct-br7" })
          yield* expectReason(backend.setLink(a, "ct-d19", { master: null, hairpin: true }), "Invalid")
          expect(yield* backend.getLink(a, "ct-d19")).toEqual(port)
        }))
    })

    describe("bridge VLANs", () => {
      const vlan = (vid: number, pvid: boolean, untagged: boolean): BridgeVlan => ({ vid, pvid, untagged })

      it("VLAN filtering is either supported or Unsupported without leaving anything behind", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const created = yield* reasonOf(
            backend.createLink({ netns: a, name: "ct-br5", kind: "bridge", vlanFiltering: true, alias: "tscni:ct" })
          )
          const supported = created === "succeeded"
          if (options.bridgeVlans !== undefined) expect(supported).toBe(options.bridgeVlans === "supported")
          if (supported) {
            expect(yield* backend.getLink(a, "ct-br5")).toMatchObject({ kind: "bridge", vlanFiltering: true, alias: "tscni:ct" })
          } else {
            expect(created).toBe("Unsupported")
            expect(linkNames(yield* backend.listLinks(a))).toEqual(["lo"])
            yield* backend.createLink({ netns: a, name: "ct-br5", kind: "bridge" })
          }
          yield* backend.createVeth({ netns: a, name: "ct-v5", peerNetns: a, peerName: "ct-v5p" })
          yield* backend.setLink(a, "ct-v5", { master: "ct-br5" })
          const defaults = supported ? [vlan(1, true, true)] : []
          expect(yield* backend.listBridgeVlans(a, "ct-v5")).toEqual(defaults)
          expect(yield* backend.listBridgeVlans(a, "ct-br5")).toEqual(defaults)
          // what fails the same way with or without support
          expect(yield* backend.listBridgeVlans(a, "ct-v5p")).toEqual([])
          yield* expectReason(backend.listBridgeVlans(a, "nope"), "NotFound")
          yield* expectReason(backend.addBridgeVlan(a, "nope", vlan(10, false, false)), "NotFound")
          yield* expectReason(backend.addBridgeVlan(a, "ct-v5p", vlan(10, false, false)), "Invalid")
          yield* expectReason(backend.addBridgeVlan(a, "ct-v5", vlan(0, false, false)), "Invalid")
          yield* expectReason(backend.addBridgeVlan(a, "ct-v5", vlan(4095, false, false)), "Invalid")
          yield* expectReason(backend.deleteBridgeVlan(a, "ct-v5", 10), "NotFound")
          yield* expectReason(backend.deleteBridgeVlan(a, "ct-v5p", 1), "NotFound")
          if (!supported) {
            yield* expectReason(backend.addBridgeVlan(a, "ct-v5", vlan(10, true, true)), "Unsupported")
            yield* expectReason(backend.addBridgeVlan(a, "ct-br5", vlan(10, false, false)), "Unsupported")
            expect(yield* backend.listBridgeVlans(a, "ct-v5")).toEqual([])
            expect(yield* backend.listBridgeVlans(a, "ct-br5")).toEqual([])
            return
          }
          yield* backend.addBridgeVlan(a, "ct-v5", vlan(10, false, false))
          expect(yield* backend.listBridgeVlans(a, "ct-v5")).toEqual([vlan(1, true, true), vlan(10, false, false)])
          // a new pvid takes over; re-adding a vid replaces its flags
          yield* backend.addBridgeVlan(a, "ct-v5", vlan(20, true, true))
          yield* backend.addBridgeVlan(a, "ct-v5", vlan(10, false, true))
          expect(yield* backend.listBridgeVlans(a, "ct-v5")).toEqual([
            vlan(1, false, true),
            vlan(10, false, true),
            vlan(20, true, true)
          ])
          yield* backend.deleteBridgeVlan(a, "ct-v5", 10)
          yield* backend.deleteBridgeVlan(a, "ct-v5", 1)
          expect(yield* backend.listBridgeVlans(a, "ct-v5")).toEqual([vlan(20, true, true)])
          yield* expectReason(backend.deleteBridgeVlan(a, "ct-v5", 10), "NotFound")
          // the bridge device's own VLANs are separate from its ports'
          yield* backend.addBridgeVlan(a, "ct-br5", vlan(30, false, false))
          expect(yield* backend.listBridgeVlans(a, "ct-br5")).toEqual([vlan(1, true, true), vlan(30, false, false)])
          yield* backend.deleteBridgeVlan(a, "ct-br5", 30)
          // leaving the bridge drops the port's VLANs; joining again starts from the default
          yield* backend.setLink(a, "ct-v5", { master: null })
          expect(yield* backend.listBridgeVlans(a, "ct-v5")).toEqual([])
          yield* backend.setLink(a, "ct-v5", { master: "ct-br5" })
          expect(yield* backend.listBridgeVlans(a, "ct-v5")).toEqual([vlan(1, true, true)])
        }))
    })

    describe("addresses", () => {
      it("an address needs its link and a valid CIDR; duplicates and missing ones are refused", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* expectReason(backend.addAddress(a, "nope", "10.99.1.2/24"), "NotFound")
          const link = yield* backend.createLink({ netns: a, name: "ct-d7", kind: "ifb" })
          yield* expectReason(backend.addAddress(a, "ct-d7", "10.99.1.300/24"), "Invalid")
          yield* expectReason(backend.addAddress(a, "ct-d7", "not-an-ip/24"), "Invalid")
          yield* backend.addAddress(a, "ct-d7", "10.99.1.2/24")
          yield* backend.addAddress(a, "ct-d7", "fd00:99::2/64")
          const listed = yield* backend.listAddresses(a, "ct-d7")
          expect(listed).toContainEqual({ netns: a, link: "ct-d7", linkIndex: link.index, family: 4, cidr: "10.99.1.2/24" })
          expect(listed).toContainEqual({ netns: a, link: "ct-d7", linkIndex: link.index, family: 6, cidr: "fd00:99::2/64" })
          expect(yield* backend.listAddresses(a)).toContainEqual(listed[0])
          yield* expectReason(backend.addAddress(a, "ct-d7", "10.99.1.2/24"), "AlreadyExists")
          yield* backend.deleteAddress(a, "ct-d7", "10.99.1.2/24")
          expect((yield* backend.listAddresses(a, "ct-d7")).map((x) => x.cidr)).not.toContain("10.99.1.2/24")
          yield* expectReason(backend.deleteAddress(a, "ct-d7", "10.99.1.2/24"), "NotFound")
        }))
    })

    describe("routes", () => {
      const upWithAddress = (backend: BackendShape, ns: NetnsPath, link: string, cidr: string) =>
        Effect.gen(function* () {
          yield* backend.createLink({ netns: ns, name: link, kind: "ifb" })
          yield* backend.setLink(ns, link, { up: true })
          yield* backend.addAddress(ns, link, cidr)
        })

      it("an address on an up link brings its connected route; down takes it away", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* upWithAddress(backend, a, "ct-d8", "10.99.2.2/24")
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "10.99.2.0/24", link: "ct-d8", gateway: undefined })).toBe(
            true
          )
          yield* backend.setLink(a, "ct-d8", { up: false })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "10.99.2.0/24" })).toBe(false)
          yield* backend.setLink(a, "ct-d8", { up: true })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "10.99.2.0/24", link: "ct-d8" })).toBe(true)
        }))

      it("lookupRoute answers the route the kernel would take: longest prefix, its link and gateway; none when unreachable or local", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* upWithAddress(backend, a, "ct-lr0", "10.98.0.2/16")
          yield* upWithAddress(backend, a, "ct-lr1", "10.98.1.2/24")
          expect(yield* backend.lookupRoute(a, "10.98.1.7")).toEqual({ dst: "10.98.1.7/32", link: "ct-lr1" })
          expect(yield* backend.lookupRoute(a, "10.98.9.7")).toEqual({ dst: "10.98.9.7/32", link: "ct-lr0" })
          expect(yield* backend.lookupRoute(a, "192.0.2.1")).toBeUndefined()
          yield* backend.addRoute(a, { dst: "0.0.0.0/0", gateway: "10.98.0.1", link: "ct-lr0" })
          expect(yield* backend.lookupRoute(a, "192.0.2.1")).toEqual({ dst: "192.0.2.1/32", gateway: "10.98.0.1", link: "ct-lr0" })
          // a local address is not reached through a unicast route
          expect(yield* backend.lookupRoute(a, "10.98.1.2")).toBeUndefined()
          yield* expectReason(backend.lookupRoute(a, "not-an-ip"), "Invalid")
        }))

      it("append lets routes to one destination through different links coexist; an identical one is refused", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          for (const [name, v4, v6] of [["ct-ap0", "10.31.0.2/24", "fd31::2/64"], ["ct-ap1", "10.32.0.2/24", "fd32::2/64"]] as const) {
            yield* backend.createVeth({ netns: a, name, peerNetns: a, peerName: `${name}p` })
            yield* backend.setLink(a, name, { up: true })
            yield* backend.setLink(a, `${name}p`, { up: true })
            yield* backend.addAddress(a, name, v4)
            yield* backend.addAddress(a, name, v6, { noDad: true })
          }
          for (const [dst, gateway, link] of [
            ["0.0.0.0/0", "10.31.0.1", "ct-ap0"],
            ["0.0.0.0/0", "10.32.0.1", "ct-ap1"],
            ["::/0", "fd31::1", "ct-ap0"],
            ["::/0", "fd32::1", "ct-ap1"]
          ] as const) {
            yield* backend.addRoute(a, { dst, gateway, link }, { append: true })
          }
          yield* expectReason(backend.addRoute(a, { dst: "0.0.0.0/0", gateway: "10.31.0.1", link: "ct-ap0" }, { append: true }), "AlreadyExists")
          yield* expectReason(backend.addRoute(a, { dst: "0.0.0.0/0", gateway: "10.31.0.1", link: "ct-ap0" }), "AlreadyExists")
          const defaults = (yield* backend.listRoutes(a)).filter((r) => r.dst === "0.0.0.0/0" || r.dst === "::/0")
          expect(defaults.map((r) => `${r.gateway} ${r.link}`).sort()).toEqual(["10.31.0.1 ct-ap0", "10.32.0.1 ct-ap1", "fd31::1 ct-ap0", "fd32::1 ct-ap1"])
          yield* backend.deleteRoute(a, { dst: "0.0.0.0/0", gateway: "10.31.0.1", link: "ct-ap0" })
          const left = (yield* backend.listRoutes(a)).filter((r) => r.dst === "0.0.0.0/0")
          expect(left.map((r) => r.gateway)).toEqual(["10.32.0.1"])
        }))

      it("a route via an unreachable gateway fails; a reachable one works once", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* upWithAddress(backend, a, "ct-d9", "10.99.3.2/24")
          yield* expectReason(backend.addRoute(a, { dst: "0.0.0.0/0", gateway: "192.0.2.1" }), "Invalid")
          yield* expectReason(backend.addRoute(a, { dst: "not-a-cidr", gateway: "10.99.3.1" }), "Invalid")
          yield* backend.addRoute(a, { dst: "0.0.0.0/0", gateway: "10.99.3.1" })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "0.0.0.0/0", gateway: "10.99.3.1", link: "ct-d9" })).toBe(
            true
          )
          yield* expectReason(backend.addRoute(a, { dst: "0.0.0.0/0", gateway: "10.99.3.1" }), "AlreadyExists")
          yield* backend.deleteRoute(a, { dst: "0.0.0.0/0", gateway: "10.99.3.1" })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "0.0.0.0/0" })).toBe(false)
          yield* expectReason(backend.deleteRoute(a, { dst: "0.0.0.0/0", gateway: "10.99.3.1" }), "NotFound")
        }))

      it("a route through a link needs that link; routes through a link go when it goes down", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* expectReason(backend.addRoute(a, { dst: "192.0.2.0/24", link: "nope" }), "NotFound")
          yield* upWithAddress(backend, a, "ct-d10", "10.99.4.2/24")
          yield* backend.addRoute(a, { dst: "192.0.2.0/24", link: "ct-d10" })
          yield* backend.addRoute(a, { dst: "198.51.100.0/24", gateway: "10.99.4.1" })
          const routes = yield* backend.listRoutes(a)
          expect(hasRoute(routes, { dst: "192.0.2.0/24", link: "ct-d10" })).toBe(true)
          expect(hasRoute(routes, { dst: "198.51.100.0/24", gateway: "10.99.4.1" })).toBe(true)
          yield* backend.setLink(a, "ct-d10", { up: false })
          const after = yield* backend.listRoutes(a)
          expect(hasRoute(after, { dst: "192.0.2.0/24" })).toBe(false)
          expect(hasRoute(after, { dst: "198.51.100.0/24" })).toBe(false)
        }))

      it("listed routes say who installed them: the kernel's connected ones `kernel`, added ones nothing (boot)", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* upWithAddress(backend, a, "ct-d20", "10.99.6.2/24")
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "10.99.6.0/24", link: "ct-d20", protocol: "kernel" })).toBe(true)
          // a protocol given to addRoute is ignored: tscni's routes are always boot
          yield* backend.addRoute(a, { dst: "192.0.2.0/24", link: "ct-d20", protocol: "static" })
          yield* backend.addRoute(a, { dst: "198.51.100.0/24", gateway: "10.99.6.1" })
          const routes = yield* backend.listRoutes(a)
          expect(hasRoute(routes, { dst: "192.0.2.0/24", protocol: undefined })).toBe(true)
          expect(hasRoute(routes, { dst: "198.51.100.0/24", protocol: undefined })).toBe(true)
          // and so it is by deleteRoute
          yield* backend.deleteRoute(a, { dst: "192.0.2.0/24", link: "ct-d20", protocol: "kernel" })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "192.0.2.0/24" })).toBe(false)
        }))

      it("addRoute's protocol option marks a route as the agent's: listed with that number, deleted without naming it", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* upWithAddress(backend, a, "ct-d21", "10.99.7.2/24")
          yield* backend.addRoute(a, { dst: "192.0.2.0/24", gateway: "10.99.7.1" }, { protocol: ROUTE_PROTOCOL_TSCNI })
          yield* backend.addRoute(a, { dst: "198.51.100.0/24", gateway: "10.99.7.1" })
          const routes = yield* backend.listRoutes(a)
          expect(hasRoute(routes, { dst: "192.0.2.0/24", gateway: "10.99.7.1", link: "ct-d21", protocol: ROUTE_PROTOCOL_TSCNI })).toBe(true)
          expect(hasRoute(routes, { dst: "198.51.100.0/24", protocol: undefined })).toBe(true)
          yield* backend.deleteRoute(a, { dst: "192.0.2.0/24", gateway: "10.99.7.1" })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "192.0.2.0/24" })).toBe(false)
        }))
    })

    describe("VXLAN devices, neighbours and forwarding entries (the node agent's VXLAN peers)", () => {
      const vxlanOn = (backend: BackendShape, ns: NetnsPath) =>
        Effect.gen(function* () {
          yield* backend.createLink({ netns: ns, name: "ct-u0", kind: "ifb" })
          yield* backend.setLink(ns, "ct-u0", { up: true })
          yield* backend.addAddress(ns, "ct-u0", "10.99.30.1/24")
          return yield* backend.createLink({
            netns: ns,
            name: "ct-vx",
            kind: "vxlan",
            mtu: 1450,
            mac: "0a:58:0a:f4:01:00",
            vxlan: { vni: 4242, port: 8472, local: "10.99.30.1", underlay: "ct-u0" }
          })
        })

      it("a VXLAN device is made with its VNI, port, local address, underlay and learning off, and reported so", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const made = yield* vxlanOn(backend, a)
          const underlay = yield* backend.getLink(a, "ct-u0")
          const listed = yield* backend.getLink(a, "ct-vx")
          expect(listed).toEqual(made)
          expect([listed.kind, listed.mtu, listed.mac]).toEqual(["vxlan", 1450, "0a:58:0a:f4:01:00"])
          expect(listed.vxlan).toEqual({ vni: 4242, port: 8472, local: "10.99.30.1", learning: false, underlayIndex: underlay.index })
          // other kinds carry no VXLAN settings, and a vxlan link needs them
          expect((yield* backend.getLink(a, "ct-u0")).vxlan).toBeUndefined()
          const without = yield* Effect.flip(backend.createLink({ netns: a, name: "ct-vx2", kind: "vxlan" }))
          expect(without.reason).toBe("Invalid")
          expect((yield* backend.listLinks(a)).some((link) => link.name === "ct-vx2")).toBe(false)
        }))

      it("permanent neighbour entries: set adds or replaces by address, delete removes, they go with their link", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* vxlanOn(backend, a)
          yield* backend.setNeighbor(a, { link: "ct-vx", ip: "10.244.1.0", mac: "0a:00:00:00:01:01" })
          yield* backend.setNeighbor(a, { link: "ct-vx", ip: "10.244.2.0", mac: "0a:00:00:00:02:02" })
          yield* backend.setNeighbor(a, { link: "ct-vx", ip: "10.244.1.0", mac: "0a:00:00:00:01:02" })
          const listed = [...(yield* backend.listNeighbors(a, "ct-vx"))].sort((x, y) => x.ip.localeCompare(y.ip))
          expect(listed).toEqual([
            { link: "ct-vx", ip: "10.244.1.0", mac: "0a:00:00:00:01:02", permanent: true },
            { link: "ct-vx", ip: "10.244.2.0", mac: "0a:00:00:00:02:02", permanent: true }
          ])
          // another link's entries are not listed
          expect(yield* backend.listNeighbors(a, "ct-u0")).toEqual([])
          yield* backend.deleteNeighbor(a, { link: "ct-vx", ip: "10.244.2.0" })
          expect((yield* backend.listNeighbors(a, "ct-vx")).map((n) => n.ip)).toEqual(["10.244.1.0"])
          const missing = yield* Effect.flip(backend.deleteNeighbor(a, { link: "ct-vx", ip: "10.244.2.0" }))
          expect(missing.reason).toBe("NotFound")
          yield* backend.deleteLink(a, "ct-vx")
          yield* vxlanOn(backend, a).pipe(Effect.catch(() => backend.createLink({
            netns: a, name: "ct-vx", kind: "vxlan", vxlan: { vni: 4242, port: 8472, underlay: "ct-u0" }
          })))
          expect(yield* backend.listNeighbors(a, "ct-vx")).toEqual([])
        }))

      it("forwarding entries of a VXLAN device: set adds or replaces by MAC, list shows only the remote ones, delete removes", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* vxlanOn(backend, a)
          yield* backend.setFdb(a, { link: "ct-vx", mac: "0a:00:00:00:01:01", dst: "10.99.30.2" })
          yield* backend.setFdb(a, { link: "ct-vx", mac: "0a:00:00:00:02:02", dst: "10.99.30.3" })
          yield* backend.setFdb(a, { link: "ct-vx", mac: "0a:00:00:00:01:01", dst: "10.99.30.4" })
          const listed = [...(yield* backend.listFdb(a, "ct-vx"))].sort((x, y) => x.mac.localeCompare(y.mac))
          expect(listed).toEqual([
            { link: "ct-vx", mac: "0a:00:00:00:01:01", dst: "10.99.30.4" },
            { link: "ct-vx", mac: "0a:00:00:00:02:02", dst: "10.99.30.3" }
          ])
          yield* backend.deleteFdb(a, { link: "ct-vx", mac: "0a:00:00:00:02:02", dst: "10.99.30.3" })
          expect((yield* backend.listFdb(a, "ct-vx")).map((f) => f.mac)).toEqual(["0a:00:00:00:01:01"])
          const missing = yield* Effect.flip(backend.deleteFdb(a, { link: "ct-vx", mac: "0a:00:00:00:02:02", dst: "10.99.30.3" }))
          expect(missing.reason).toBe("NotFound")
        }))

      it("an onlink route reaches a gateway no address covers, and is listed as onlink", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* vxlanOn(backend, a)
          yield* backend.setLink(a, "ct-vx", { up: true })
          // without onlink the gateway is unreachable: no route covers 10.244.1.0
          const refused = yield* Effect.flip(backend.addRoute(a, { dst: "10.244.1.0/24", gateway: "10.244.1.0", link: "ct-vx" }))
          expect(refused.reason).toBe("Invalid")
          yield* backend.addRoute(a, { dst: "10.244.1.0/24", gateway: "10.244.1.0", link: "ct-vx", onlink: true }, { protocol: ROUTE_PROTOCOL_TSCNI })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "10.244.1.0/24", gateway: "10.244.1.0", link: "ct-vx", onlink: true, protocol: ROUTE_PROTOCOL_TSCNI })).toBe(true)
          yield* backend.deleteRoute(a, { dst: "10.244.1.0/24", gateway: "10.244.1.0", link: "ct-vx" })
          expect(hasRoute(yield* backend.listRoutes(a), { dst: "10.244.1.0/24" })).toBe(false)
        }))
    })

    describe("sysctls", () => {
      it("writeSysctl returns the previous value; unknown keys are NotFound", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const before = yield* backend.readSysctl(a, "net.ipv4.ip_forward")
          expect(yield* backend.writeSysctl(a, "net.ipv4.ip_forward", "1")).toBe(before)
          expect(yield* backend.readSysctl(a, "net.ipv4.ip_forward")).toBe("1")
          expect(yield* backend.writeSysctl(a, "net.ipv4.ip_forward", before)).toBe("1")
          expect(yield* backend.readSysctl(a, "net.ipv4.ip_forward")).toBe(before)
          yield* expectReason(backend.readSysctl(a, "net.ipv4.tscni_no_such_key"), "NotFound")
          yield* expectReason(backend.writeSysctl(a, "net.ipv4.tscni_no_such_key", "1"), "NotFound")
        }))

      it("per-link sysctls exist exactly as long as the link", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* expectReason(backend.readSysctl(a, "net.ipv4.conf.ct-d11.route_localnet"), "NotFound")
          yield* backend.createLink({ netns: a, name: "ct-d11", kind: "ifb" })
          const previous = yield* backend.writeSysctl(a, "net.ipv4.conf.ct-d11.route_localnet", "1")
          expect(previous).toBe("0")
          expect(yield* backend.readSysctl(a, "net.ipv4.conf.ct-d11.route_localnet")).toBe("1")
          yield* backend.deleteLink(a, "ct-d11")
          yield* expectReason(backend.readSysctl(a, "net.ipv4.conf.ct-d11.route_localnet"), "NotFound")
        }))

      it("a link whose name holds a dot (a VLAN-style eth0.100) has its sysctls under sysctlKey's '/' form", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createLink({ netns: a, name: "ct.d30", kind: "ifb" })
          const key = sysctlKey("net", "ipv4", "conf", "ct.d30", "route_localnet")
          expect(key).toBe("net/ipv4/conf/ct.d30/route_localnet")
          expect(yield* backend.writeSysctl(a, key, "1")).toBe("0")
          expect(yield* backend.readSysctl(a, key)).toBe("1")
          // the same key written as a path from /proc/sys
          expect(yield* backend.readSysctl(a, `/${key}`)).toBe("1")
          yield* backend.deleteLink(a, "ct.d30")
          yield* expectReason(backend.readSysctl(a, key), "NotFound")
        }))
    })

    describe("traffic control", () => {
      it("a root tbf qdisc can be added once, listed and deleted", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createLink({ netns: a, name: "ct-d12", kind: "ifb" })
          const tbf = { rate: 8_000_000, burst: 800_000, limit: 100_000 }
          yield* backend.addQdisc(a, { link: "ct-d12", kind: "tbf", parent: "root", tbf })
          const listed = (yield* backend.listQdiscs(a, "ct-d12")).filter((q) => q.kind === "tbf")
          expect(listed).toHaveLength(1)
          expect(listed[0]?.parent).toBe("root")
          expect(listed[0]?.link).toBe("ct-d12")
          expect(listed[0]?.tbf?.rate).toBe(tbf.rate)
          yield* expectReason(backend.addQdisc(a, { link: "ct-d12", kind: "tbf", parent: "root", tbf }), "AlreadyExists")
          yield* backend.deleteQdisc(a, "ct-d12", "root")
          expect((yield* backend.listQdiscs(a, "ct-d12")).filter((q) => q.kind === "tbf")).toEqual([])
          yield* expectReason(backend.deleteQdisc(a, "ct-d12", "root"), "NotFound")
        }))

      it("a redirect needs an ingress qdisc on its link", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createLink({ netns: a, name: "ct-d13", kind: "ifb" })
          yield* backend.createLink({ netns: a, name: "ct-ifb0", kind: "ifb" })
          const redirect = { link: "ct-d13", toLink: "ct-ifb0" }
          yield* expectReason(backend.addRedirect(a, redirect), "Invalid")
          yield* backend.addQdisc(a, { link: "ct-d13", kind: "ingress", parent: "ingress" })
          yield* expectReason(backend.addQdisc(a, { link: "ct-d13", kind: "clsact", parent: "ingress" }), "AlreadyExists")
          yield* backend.addRedirect(a, redirect)
          expect(yield* backend.listRedirects(a)).toContainEqual(redirect)
          expect(yield* backend.listRedirects(a, "ct-d13")).toEqual([redirect])
          expect(yield* backend.listRedirects(a, "ct-ifb0")).toEqual([])
          yield* expectReason(backend.listRedirects(a, "ct-nope"), "NotFound")
          yield* backend.deleteRedirect(a, redirect)
          expect(yield* backend.listRedirects(a)).not.toContainEqual(redirect)
          expect(yield* backend.listRedirects(a, "ct-d13")).toEqual([])
          yield* expectReason(backend.deleteRedirect(a, redirect), "NotFound")
          yield* backend.deleteQdisc(a, "ct-d13", "ingress")
          yield* expectReason(backend.deleteQdisc(a, "ct-d13", "ingress"), "NotFound")
        }))

      it("the kernel's default qdiscs are never listed, up or down", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createVeth({ netns: a, name: "ct-v9", peerNetns: a, peerName: "ct-v9p" })
          yield* backend.createLink({ netns: a, name: "ct-d21", kind: "ifb" })
          for (const link of ["ct-v9", "ct-v9p", "ct-d21", "lo"]) expect(yield* backend.listQdiscs(a, link)).toEqual([])
          for (const link of ["ct-v9", "ct-v9p", "ct-d21", "lo"]) yield* backend.setLink(a, link, { up: true })
          for (const link of ["ct-v9", "ct-v9p", "ct-d21", "lo"]) expect(yield* backend.listQdiscs(a, link)).toEqual([])
          yield* backend.addQdisc(a, { link: "ct-d21", kind: "clsact", parent: "ingress" })
          expect((yield* backend.listQdiscs(a, "ct-d21")).map((q) => q.kind)).toEqual(["clsact"])
          yield* backend.deleteQdisc(a, "ct-d21", "ingress")
          expect(yield* backend.listQdiscs(a, "ct-d21")).toEqual([])
        }))
    })

    describe("packet filtering", () => {
      it("rules are added, listed and removed by table and comment", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const rule = (comment: string, body: string) => ({
            family: "inet" as const,
            table: "tscni-ct",
            chain: "forward",
            rule: body,
            comment
          })
          const ct = { family: "inet", name: "tscni-ct" } as const
          yield* backend.addFilterRules(a, [rule("ct-owner-1", "ip saddr 10.99.9.2 accept"), rule("ct-owner-2", "ip saddr 10.99.9.3 accept")])
          expect((yield* backend.listFilterRules(a, ct)).map((r) => r.comment).sort()).toEqual([
            "ct-owner-1",
            "ct-owner-2"
          ])
          // another family's table of the same name is another table
          expect(yield* backend.listFilterRules(a, { ...ct, family: "ip" })).toEqual([])
          // the table's name is listed like any other
          expect(yield* backend.listNftTables(a, "tscni-ct")).toEqual([ct])
          yield* backend.deleteFilterRules(a, { ...ct, family: "ip" }, "ct-owner-1")
          yield* backend.deleteFilterRules(a, ct, "ct-owner-1")
          expect((yield* backend.listFilterRules(a, ct)).map((r) => r.comment)).toEqual(["ct-owner-2"])
          yield* backend.deleteFilterRules(a, ct, "ct-owner-1")
          yield* backend.deleteFilterRules(a, ct, "ct-owner-2")
          expect(yield* backend.listFilterRules(a, ct)).toEqual([])
          // what would break out of a script line, or is no rule at all, is refused on both backends alike
          for (const bad of [rule("ct owner", "accept"), rule("ct-owner-3", "accept; drop"), rule("ct-owner-4", " "), { ...rule("ct-owner-5", "accept"), table: "1bad" }]) {
            yield* expectReason(backend.addFilterRules(a, [bad]), "Invalid")
          }
          expect(yield* backend.listFilterRules(a, ct)).toEqual([])
        }))

      it("bridge and netdev families: a MAC spoof check on a bridge port and a device ingress chain", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createVeth({ netns: a, name: "ct-v10", peerNetns: a, peerName: "ct-v10p" })
          const spoof: FilterRule = {
            family: "bridge",
            table: "tscni-ct-br",
            chain: "prerouting",
            rule: 'iifname "ct-v10" ether saddr != 0a:58:0a:01:00:02 drop',
            comment: "ct-owner-3",
            baseChain: { type: "filter", hook: "prerouting", priority: -300 }
          }
          const ingress: FilterRule = {
            family: "netdev",
            table: "tscni-ct-nd",
            chain: "ingress",
            rule: "ether saddr 0a:58:0a:01:00:09 drop",
            comment: "ct-owner-4",
            baseChain: { type: "filter", hook: "ingress", priority: 0, device: "ct-v10" }
          }
          const filter = { type: "filter", priority: 0 } as const
          // refused as a whole, before anything is added
          yield* expectReason(
            backend.addFilterRules(a, [spoof, { ...spoof, baseChain: { ...filter, type: "nat", hook: "prerouting" } }]),
            "Invalid"
          )
          yield* expectReason(
            backend.addFilterRules(a, [{ ...ingress, baseChain: { ...filter, hook: "prerouting", device: "ct-v10" } }]),
            "Invalid"
          )
          yield* expectReason(backend.addFilterRules(a, [{ ...ingress, baseChain: { ...filter, hook: "ingress" } }]), "Invalid")
          // a family outside FilterFamily (a config or a caller bypassing the schema)
          yield* expectReason(backend.addFilterRules(a, [spoof, { ...spoof, family: "arp" as FilterRule["family"] }]), "Invalid")
          const br = { family: "bridge", name: "tscni-ct-br" } as const
          const nd = { family: "netdev", name: "tscni-ct-nd" } as const
          expect([...(yield* backend.listFilterRules(a, br)), ...(yield* backend.listFilterRules(a, nd))]).toEqual([])
          yield* backend.addFilterRules(a, [spoof, ingress])
          const listed = [...(yield* backend.listFilterRules(a, br)), ...(yield* backend.listFilterRules(a, nd))]
          expect(listed.map((r) => [r.family, r.table, r.chain, r.comment])).toEqual([
            ["bridge", "tscni-ct-br", "prerouting", "ct-owner-3"],
            ["netdev", "tscni-ct-nd", "ingress", "ct-owner-4"]
          ])
          yield* backend.deleteFilterRules(a, br, "ct-owner-3")
          yield* backend.deleteFilterRules(a, nd, "ct-owner-4")
          expect([...(yield* backend.listFilterRules(a, br)), ...(yield* backend.listFilterRules(a, nd))]).toEqual([])
        }))
    })

    describe("keyed nftables tables", () => {
      const table: NftTable = {
        family: "inet",
        name: "tscni-ct-k",
        sets: [
          { name: "pods4", type: "ipv4_addr" },
          { name: "own4", type: "ipv4_addr . ipv4_addr", interval: true },
          { name: "pods6", type: "ipv6_addr" },
          { name: "ports", type: "inet_proto . inet_service", map: "ipv4_addr . inet_service" },
          { name: "macs", type: "ifname . ether_addr" }
        ],
        chains: [
          {
            name: "postrouting",
            base: { type: "nat", hook: "postrouting", priority: 100 },
            rules: ["ip daddr 224.0.0.0/4 return", "ip saddr . ip daddr @own4 return", "ip saddr @pods4 masquerade", "ip6 saddr @pods6 masquerade"]
          },
          {
            name: "prerouting",
            base: { type: "nat", hook: "prerouting", priority: -100 },
            rules: ["fib daddr type local dnat ip to meta l4proto . th dport map @ports"]
          },
          { name: "forward", base: { type: "filter", hook: "forward", priority: 0 }, rules: ["iifname . ether saddr @macs accept"] }
        ]
      }
      const first: ReadonlyArray<NftElement> = [
        { set: "pods4", key: "10.99.9.2", comment: "ct-owner-1" },
        { set: "own4", key: "10.99.9.2 . 10.99.9.0/24", comment: "ct-owner-1" },
        { set: "pods6", key: "fd00:99::2", comment: "ct-owner-1" },
        { set: "ports", key: "tcp . 8080", value: "10.99.9.2 . 80", comment: "ct-owner-1" },
        { set: "macs", key: '"ct-veth1" . 0a:58:0a:63:09:02', comment: "ct-owner-1" }
      ]
      const second: ReadonlyArray<NftElement> = [
        { set: "pods4", key: "10.99.9.3", comment: "ct-owner-2" },
        { set: "ports", key: "udp . 53", value: "10.99.9.3 . 5353", comment: "ct-owner-2" }
      ]
      const keys = (elements: ReadonlyArray<NftElement>) => elements.map(({ set, key }) => ({ set, key }))
      const sorted = (elements: ReadonlyArray<NftElement>) => [...elements].sort((x, y) => `${x.set} ${x.key}`.localeCompare(`${y.set} ${y.key}`))

      it("a table is replaced whole in one call, and changed in one transaction: sets, chains and elements, all or nothing", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const ref = { family: "inet", name: "tscni-ct-pol" } as const
          const dispatch = { name: "ingress4", type: "ipv4_addr", map: "verdict" } as const
          const forward = { name: "forward", base: { type: "filter", hook: "forward", priority: 0 }, rules: ["ct state established,related accept", "ip daddr vmap @ingress4"] } as const
          const old: NftTable = { ...ref, sets: [dispatch, { name: "gone", type: "ipv4_addr" }], chains: [forward, { name: "in-a", rules: ["drop"] }] }
          yield* backend.replaceNftTable(a, old, [{ set: "ingress4", key: "10.99.9.2", value: "jump in-a", comment: "ct-owner-1" }, { set: "gone", key: "10.99.9.9", comment: "ct-owner-1" }])
          const peers = { name: "ra4", type: "ipv4_addr", interval: true } as const
          const ports = { name: "rp", type: "inet_proto . inet_service", interval: true } as const
          const made: NftTable = { ...ref, sets: [dispatch, peers, ports], chains: [forward, { name: "in-a", rules: ["ip saddr @ra4 meta l4proto . th dport @rp return", "meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"] }] }
          const madeElements: ReadonlyArray<NftElement> = [
            { set: "ingress4", key: "10.99.9.2", value: "jump in-a", comment: "ct-owner-1" },
            { set: "ra4", key: "10.99.0.0/16", comment: "ct-owner-1" },
            { set: "rp", key: "tcp . 80-81", comment: "ct-owner-1" },
            { set: "rp", key: "udp . 53", comment: "ct-owner-1" }
          ]
          // replaced: what the first table had and the second has not is gone
          yield* backend.replaceNftTable(a, made, madeElements)
          expect(sorted(yield* backend.listNftElements(a, ref))).toEqual(sorted(madeElements))
          expect(yield* backend.listNftChainRules(a, ref, "in-a")).toHaveLength(3)
          // a new chain with a new set takes over the pod; the old chain goes, in one transaction
          yield* backend.changeNftTable(a, ref, {
            addSets: [{ name: "rb4", type: "ipv4_addr", interval: true }],
            addChains: [{ name: "in-b", rules: ["ip saddr @rb4 return", "drop"] }],
            deleteElements: [{ set: "ingress4", key: "10.99.9.2" }, { set: "rp", key: "udp . 53" }],
            addElements: [{ set: "ingress4", key: "10.99.9.2", value: "jump in-b", comment: "ct-owner-1" }, { set: "rb4", key: "10.98.0.0/16", comment: "ct-owner-1" }, { set: "ingress4", key: "10.99.9.3", value: "jump in-b", comment: "ct-owner-1" }],
            deleteChains: [],
            deleteSets: [],
            sets: [dispatch]
          })
          yield* backend.changeNftTable(a, ref, { addSets: [], addChains: [], deleteElements: [], addElements: [], deleteChains: ["in-a"], deleteSets: ["ra4", "rp"], sets: [] })
          const now: ReadonlyArray<NftElement> = [
            { set: "ingress4", key: "10.99.9.2", value: "jump in-b", comment: "ct-owner-1" },
            { set: "ingress4", key: "10.99.9.3", value: "jump in-b", comment: "ct-owner-1" },
            { set: "rb4", key: "10.98.0.0/16", comment: "ct-owner-1" }
          ]
          expect(sorted(yield* backend.listNftElements(a, ref))).toEqual(sorted(now))
          yield* expectReason(backend.listNftChainRules(a, ref, "in-a"), "NotFound")
          expect(yield* backend.listNftChainRules(a, ref, "in-b")).toHaveLength(2)
          // refused as a whole: a set still looked up, a chain still jumped to, an element that is not there
          const nothing = { addSets: [], addChains: [], deleteElements: [], addElements: [], deleteChains: [], deleteSets: [], sets: [] }
          yield* expectReason(backend.changeNftTable(a, ref, { ...nothing, addElements: [{ set: "rb4", key: "10.97.0.0/16", comment: "ct-owner-1" }], sets: [{ name: "rb4", type: "ipv4_addr", interval: true }], deleteSets: ["ingress4"] }), "Busy")
          yield* expectReason(backend.changeNftTable(a, ref, { ...nothing, deleteChains: ["in-b"] }), "Busy")
          yield* expectReason(backend.changeNftTable(a, ref, { ...nothing, deleteElements: [{ set: "ingress4", key: "10.99.9.3" }, { set: "ingress4", key: "10.99.9.4" }] }), "NotFound")
          yield* expectReason(backend.changeNftTable(a, ref, { ...nothing, addChains: [{ name: "in-b", rules: ["drop"] }] }), "AlreadyExists")
          yield* expectReason(backend.changeNftTable(a, { family: "inet", name: "tscni-ct-nope" }, { ...nothing, deleteChains: ["in-b"] }), "NotFound")
          expect(sorted(yield* backend.listNftElements(a, ref))).toEqual(sorted(now))
          yield* backend.deleteNftTable(a, ref)
        }))

      it("a table is created whole with its first elements; elements are added, looked up and deleted by key", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* expectReason(backend.addNftElements(a, table, second), "NotFound")
          yield* expectReason(backend.getNftElements(a, table, keys(first)), "NotFound")
          expect(yield* backend.listNftTables(a, "tscni-ct-k")).toEqual([])
          yield* backend.createNftTable(a, table, first)
          yield* expectReason(backend.createNftTable(a, table, []), "AlreadyExists")
          expect(yield* backend.listNftTables(a, "tscni-ct-k")).toEqual([{ family: "inet", name: "tscni-ct-k" }])
          expect(yield* backend.listNftTables(a, "tscni-ct-nope")).toEqual([])
          for (const chain of table.chains) expect(yield* backend.listNftChainRules(a, table, chain.name)).toHaveLength(chain.rules.length)
          yield* expectReason(backend.listNftChainRules(a, table, "nope"), "NotFound")
          yield* backend.addNftElements(a, table, second)
          // keys come back exactly as given (canonical), with their values and owners
          expect(sorted(yield* backend.listNftElements(a, table))).toEqual(sorted([...first, ...second]))
          expect(sorted(yield* backend.getNftElements(a, table, [...keys(second), { set: "pods4", key: "10.99.9.200" }]))).toEqual(sorted(second))
          // a key someone holds already: AlreadyExists, and the batch's other element is not added either
          yield* expectReason(
            backend.addNftElements(a, table, [{ set: "pods4", key: "10.99.9.4", comment: "ct-owner-3" }, { set: "ports", key: "tcp . 8080", value: "10.99.9.4 . 80", comment: "ct-owner-3" }]),
            "AlreadyExists"
          )
          expect(yield* backend.getNftElements(a, table, [{ set: "pods4", key: "10.99.9.4" }])).toEqual([])
          expect(yield* backend.getNftElements(a, table, [{ set: "ports", key: "tcp . 8080" }])).toEqual([first[3]!])
          // a key that is not of its set's type is Invalid for a get and a delete (the set's types decide)
          yield* expectReason(backend.getNftElements(a, table, [{ set: "pods4", key: "fd00:99::9" }]), "Invalid")
          yield* expectReason(backend.deleteNftElements(a, table, [{ set: "ports", key: "10.99.9.2" }]), "Invalid")
          // a delete with one key missing deletes nothing
          yield* expectReason(backend.deleteNftElements(a, table, [...keys(second), { set: "pods4", key: "10.99.9.200" }]), "NotFound")
          expect(sorted(yield* backend.getNftElements(a, table, keys(second)))).toEqual(sorted(second))
          yield* backend.deleteNftElements(a, table, keys(second))
          expect(yield* backend.getNftElements(a, table, keys(second))).toEqual([])
          expect(sorted(yield* backend.listNftElements(a, table))).toEqual(sorted(first))
          yield* backend.deleteNftTable(a, table)
          yield* expectReason(backend.deleteNftTable(a, table), "NotFound")
          yield* expectReason(backend.listNftElements(a, table), "NotFound")
          expect(yield* backend.listNftTables(a, "tscni-ct-k")).toEqual([])
        }))

      it("bridge family: a port and MAC set checked from a bridge's prerouting", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const spoof: NftTable = {
            family: "bridge",
            name: "tscni-ct-sp",
            sets: [{ name: "ports", type: "ifname" }, { name: "allowed", type: "ifname . ether_addr" }],
            chains: [{ name: "prerouting", base: { type: "filter", hook: "prerouting", priority: -300 }, rules: ["iifname @ports iifname . ether saddr != @allowed drop"] }]
          }
          const elements: ReadonlyArray<NftElement> = [
            { set: "ports", key: '"ct-v20"', comment: "ct-owner-1" },
            { set: "allowed", key: '"ct-v20" . 0a:58:0a:63:09:02', comment: "ct-owner-1" }
          ]
          yield* backend.createNftTable(a, spoof, elements)
          expect(sorted(yield* backend.listNftElements(a, spoof))).toEqual(sorted(elements))
          expect(yield* backend.listNftTables(a, "tscni-ct-sp")).toEqual([{ family: "bridge", name: "tscni-ct-sp" }])
          yield* backend.deleteNftElements(a, spoof, keys(elements))
          expect(yield* backend.listNftElements(a, spoof)).toEqual([])
          yield* backend.deleteNftTable(a, spoof)
        }))

      // every key and value type a skeleton may use, each set alone, so every spelling is pinned
      const wide: NftTable = {
        family: "inet",
        name: "tscni-ct-kw",
        sets: [
          { name: "pods6", type: "ipv6_addr" },
          { name: "own4", type: "ipv4_addr . ipv4_addr", interval: true },
          { name: "own6", type: "ipv6_addr . ipv6_addr", interval: true },
          { name: "hostdnat4", type: "ipv4_addr . inet_proto . inet_service", map: "ipv4_addr . inet_service" },
          { name: "dnat6", type: "inet_proto . inet_service", map: "ipv6_addr . inet_service" },
          { name: "ports", type: "ifname" },
          { name: "allowed", type: "ifname . ether_addr" },
          { name: "marks", type: "mark" },
          { name: "verdicts", type: "ipv4_addr", map: "verdict" },
          { name: "nets4", type: "ipv4_addr", interval: true }
        ],
        chains: [
          { name: "target", rules: [] },
          { name: "forward", base: { type: "filter", hook: "forward", priority: 0 }, rules: ["ip saddr vmap @verdicts", "ip saddr . ip daddr @own4 accept"] }
        ]
      }
      const wideElements: ReadonlyArray<NftElement> = [
        { set: "pods6", key: "fd00:99::2", comment: "ct-owner-1" },
        { set: "own4", key: "10.99.9.2 . 10.99.9.0/24", comment: "ct-owner-1" },
        // a full-length prefix is the address alone
        { set: "own4", key: "10.99.9.3 . 10.99.9.3", comment: "ct-owner-2" },
        { set: "own4", key: "10.99.9.4 . 0.0.0.0/0", comment: "ct-owner-2" },
        { set: "own6", key: "fd00:99::2 . fd00:99::/64", comment: "ct-owner-1" },
        { set: "hostdnat4", key: "192.0.2.1 . tcp . 8080", value: "10.99.9.2 . 80", comment: "ct-owner-1" },
        { set: "hostdnat4", key: "192.0.2.1 . udp . 0", value: "10.99.9.3 . 65535", comment: "ct-owner-2" },
        { set: "dnat6", key: "udp . 53", value: "fd00:99::2 . 5353", comment: "ct-owner-1" },
        { set: "dnat6", key: "sctp . 9", value: "fd00:99::3 . 9", comment: "ct-owner-2" },
        { set: "ports", key: '"ct-veth1"', comment: "ct-owner-1" },
        { set: "ports", key: '"ct-a.b_c-123456"', comment: "ct-owner-2" },
        { set: "allowed", key: '"ct-veth1" . 0a:58:0a:63:09:02', comment: "ct-owner-1" },
        { set: "marks", key: "0x00004000", comment: "ct-owner-1" },
        { set: "verdicts", key: "10.99.9.2", value: "accept", comment: "ct-owner-1" },
        { set: "verdicts", key: "10.99.9.3", value: "jump target", comment: "ct-owner-2" },
        // comments of every character an owner may hold, up to the longest
        { set: "pods6", key: "fd00:99::3", comment: "fw:0123abcd:ns/pod=x.y_z-1" },
        { set: "pods6", key: "fd00:99::4", comment: "x".repeat(120) }
      ]
      const nets: NftElement = { set: "nets4", key: "10.98.0.0/16", comment: "ct-owner-1" }

      it("keys and values of every type come back as given: concatenations, intervals with prefixes, maps to concatenations and verdicts, names, MACs, marks", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.createNftTable(a, wide, [])
          yield* backend.addNftElements(a, wide, wideElements)
          // a set of single-field intervals, alone
          yield* backend.addNftElements(a, wide, [nets])
          const all = [...wideElements, nets]
          expect(sorted(yield* backend.listNftElements(a, wide))).toEqual(sorted(all))
          expect(sorted(yield* backend.getNftElements(a, wide, keys(all)))).toEqual(sorted(all))
          // each key alone, too
          for (const element of all) expect(yield* backend.getNftElements(a, wide, [{ set: element.set, key: element.key }])).toEqual([element])
          // a key inside another element's range is not that element; neither is a key of another port or protocol
          const absent = [
            { set: "own4", key: "10.99.9.2 . 10.99.9.0/25" },
            { set: "own4", key: "10.99.9.2 . 10.99.9.5" },
            { set: "own4", key: "10.99.9.3 . 10.99.9.0/24" },
            { set: "hostdnat4", key: "192.0.2.1 . udp . 8080" },
            { set: "dnat6", key: "tcp . 53" },
            { set: "ports", key: '"ct-veth2"' },
            { set: "allowed", key: '"ct-veth1" . 0a:58:0a:63:09:03' },
            { set: "marks", key: "0x00004001" },
            { set: "nets4", key: "10.98.1.0/24" },
            { set: "nets4", key: "10.98.0.0/15" }
          ]
          expect(yield* backend.getNftElements(a, wide, absent)).toEqual([])
          for (const key of absent) yield* expectReason(backend.deleteNftElements(a, wide, [key]), "NotFound")
          // a missing element among several: the others are found, a delete of them all deletes none
          const mixed = [absent[0]!, { set: "own4", key: "10.99.9.2 . 10.99.9.0/24" }, absent[3]!, { set: "verdicts", key: "10.99.9.3" }, absent[5]!]
          expect(sorted(yield* backend.getNftElements(a, wide, mixed))).toEqual(sorted([wideElements[1]!, wideElements[14]!]))
          yield* expectReason(backend.deleteNftElements(a, wide, mixed), "NotFound")
          expect(sorted(yield* backend.listNftElements(a, wide))).toEqual(sorted(all))
          // a key that is there, in every set: AlreadyExists, and nothing of the call is added
          for (const element of all) {
            yield* expectReason(backend.addNftElements(a, wide, [{ set: "pods6", key: "fd00:99::99", comment: "ct-owner-3" }, { ...element, comment: "ct-owner-3" }]), "AlreadyExists")
          }
          // the same key twice in one call
          yield* expectReason(backend.addNftElements(a, wide, [{ set: "marks", key: "0x00000001", comment: "ct-owner-3" }, { set: "marks", key: "0x00000001", comment: "ct-owner-3" }]), "AlreadyExists")
          expect(sorted(yield* backend.listNftElements(a, wide))).toEqual(sorted(all))
          // a set the table does not have, looked up or deleted from
          yield* expectReason(backend.getNftElements(a, wide, [{ set: "nope", key: "10.99.9.2" }]), "NotFound")
          yield* expectReason(backend.deleteNftElements(a, wide, [{ set: "nope", key: "10.99.9.2" }]), "NotFound")
          // deleted by the keys a listing printed, one owner's across sets in one call
          const listed = yield* backend.listNftElements(a, wide)
          yield* backend.deleteNftElements(a, wide, keys(listed.filter((element) => element.comment === "ct-owner-2")))
          expect(sorted(yield* backend.listNftElements(a, wide))).toEqual(sorted(all.filter((element) => element.comment !== "ct-owner-2")))
          yield* backend.deleteNftElements(a, wide, keys(all.filter((element) => element.comment !== "ct-owner-2" && element.set !== "nets4")))
          yield* backend.deleteNftElements(a, wide, [{ set: "nets4", key: nets.key }])
          expect(yield* backend.listNftElements(a, wide)).toEqual([])
          yield* backend.deleteNftTable(a, wide)
        }))

      it("a thousand pods' elements in one call: added, listed and deleted whole, all or nothing", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const many = Array.from({ length: 1200 }, (_, i): ReadonlyArray<NftElement> => {
            const ip = `10.97.${i >> 8}.${i & 255}`
            return [
              { set: "pods4", key: ip, comment: `ct-owner-${i}` },
              { set: "ports", key: `tcp . ${10000 + i}`, value: `${ip} . 80`, comment: `ct-owner-${i}` }
            ]
          }).flat()
          yield* backend.createNftTable(a, table, [])
          // the last key is there already: none of the others is added
          yield* backend.addNftElements(a, table, [many[many.length - 1]!])
          yield* expectReason(backend.addNftElements(a, table, many), "AlreadyExists")
          expect(yield* backend.listNftElements(a, table)).toEqual([many[many.length - 1]!])
          yield* backend.deleteNftElements(a, table, keys([many[many.length - 1]!]))
          yield* backend.addNftElements(a, table, many)
          expect(sorted(yield* backend.listNftElements(a, table))).toEqual(sorted(many))
          // one missing: none is deleted
          yield* expectReason(backend.deleteNftElements(a, table, [...keys(many), { set: "pods4", key: "10.99.9.200" }]), "NotFound")
          expect(yield* backend.listNftElements(a, table)).toHaveLength(many.length)
          yield* backend.deleteNftElements(a, table, keys(many))
          expect(yield* backend.listNftElements(a, table)).toEqual([])
          yield* backend.deleteNftTable(a, table)
        }))

      it("a table deleted and created again under its name holds what its new skeleton says", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const before: NftTable = { family: "inet", name: "tscni-ct-kr", sets: [{ name: "s", type: "ipv4_addr" }, { name: "m", type: "inet_service", map: "ipv4_addr" }], chains: [] }
          const after: NftTable = { ...before, sets: [{ name: "s", type: "ipv6_addr" }, { name: "m", type: "inet_service", map: "ipv6_addr . inet_service" }] }
          yield* backend.createNftTable(a, before, [{ set: "s", key: "10.99.9.2", comment: "ct-owner-1" }])
          yield* backend.addNftElements(a, before, [{ set: "m", key: "80", value: "10.99.9.2", comment: "ct-owner-1" }])
          expect(yield* backend.getNftElements(a, before, [{ set: "s", key: "10.99.9.2" }])).toHaveLength(1)
          yield* backend.deleteNftTable(a, before)
          yield* expectReason(backend.getNftElements(a, before, [{ set: "s", key: "10.99.9.2" }]), "NotFound")
          yield* expectReason(backend.addNftElements(a, before, [{ set: "s", key: "10.99.9.3", comment: "ct-owner-1" }]), "NotFound")
          yield* backend.createNftTable(a, after, [])
          const elements: ReadonlyArray<NftElement> = [
            { set: "s", key: "fd00:99::2", comment: "ct-owner-1" },
            { set: "m", key: "80", value: "fd00:99::2 . 8080", comment: "ct-owner-1" }
          ]
          yield* backend.addNftElements(a, after, elements)
          expect(sorted(yield* backend.getNftElements(a, after, keys(elements)))).toEqual(sorted(elements))
          expect(sorted(yield* backend.listNftElements(a, after))).toEqual(sorted(elements))
          yield* backend.deleteNftElements(a, after, keys(elements))
          yield* backend.deleteNftTable(a, after)
        }))

      it("what does not fit is refused before anything changes: skeletons, keys, values, comments", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const badTables: ReadonlyArray<NftTable> = [
            { ...table, name: "1bad" },
            { ...table, sets: [{ name: "s", type: "ipv4_address" }] },
            { ...table, sets: [{ name: "s", type: "ipv4_addr", map: "nope" }] },
            { ...table, chains: [{ name: "c", rules: ["accept; flush ruleset"] }] },
            { ...table, sets: [...table.sets, table.sets[0]!] }
          ]
          for (const bad of badTables) yield* expectReason(backend.createNftTable(a, bad, []), "Invalid")
          expect(yield* backend.listNftTables(a, "tscni-ct-k")).toEqual([])
          const badElements: ReadonlyArray<NftElement> = [
            { set: "pods4", key: "10.99.9.02", comment: "ct-owner-1" },
            { set: "pods4", key: "10.99.9.2 } ; flush ruleset ; {", comment: "ct-owner-1" },
            { set: "pods6", key: "fd00:99:0:0::2", comment: "ct-owner-1" },
            { set: "pods4", key: "10.99.9.0/24", comment: "ct-owner-1" },
            { set: "own4", key: "10.99.9.2 . 10.99.9.1/24", comment: "ct-owner-1" },
            { set: "own4", key: "10.99.9.2 . 10.99.9.2/32", comment: "ct-owner-1" },
            { set: "pods4", key: "10.99.9.2", value: "10.99.9.2 . 80", comment: "ct-owner-1" },
            { set: "ports", key: "tcp . 8080", comment: "ct-owner-1" },
            { set: "ports", key: "tcp . 65536", value: "10.99.9.2 . 80", comment: "ct-owner-1" },
            { set: "ports", key: "TCP . 8080", value: "10.99.9.2 . 80", comment: "ct-owner-1" },
            { set: "macs", key: '"ct-veth1" . 0A:58:0A:63:09:02', comment: "ct-owner-1" },
            { set: "macs", key: "ct-veth1 . 0a:58:0a:63:09:02", comment: "ct-owner-1" },
            { set: "pods4", key: "10.99.9.2", comment: "has space" }
          ]
          yield* backend.createNftTable(a, table, [])
          for (const bad of badElements) {
            yield* expectReason(backend.addNftElements(a, table, [bad]), "Invalid")
            yield* expectReason(backend.createNftTable(a, { ...table, name: "tscni-ct-k2" }, [bad]), "Invalid")
          }
          // gets and deletes take keys as printed, for any skeleton: only what breaks out of a list is refused
          for (const key of ["10.99.9.2 } ; flush ruleset ; {", "10.99.9.2, 10.99.9.3", "10.99.9.2\nflush ruleset", ""]) {
            yield* expectReason(backend.getNftElements(a, table, [{ set: "pods4", key }]), "Invalid")
            yield* expectReason(backend.deleteNftElements(a, table, [{ set: "pods4", key }]), "Invalid")
          }
          // a set the skeleton does not have
          yield* expectReason(backend.addNftElements(a, table, [{ set: "nope", key: "10.99.9.2", comment: "ct-owner-1" }]), "NotFound")
          expect(yield* backend.listNftElements(a, table)).toEqual([])
          expect(yield* backend.listNftTables(a, "tscni-ct-k")).toEqual([{ family: "inet", name: "tscni-ct-k" }])
          yield* backend.deleteNftTable(a, table)
        }))

      it("a missing namespace is NotFound", (backend) =>
        Effect.gen(function* () {
          const gone = yield* backend.createNetns(uniqueNetnsName())
          yield* backend.deleteNetns(gone)
          yield* expectReason(backend.createNftTable(gone, table, []), "NotFound")
          yield* expectReason(backend.addNftElements(gone, table, first), "NotFound")
          yield* expectReason(backend.listNftTables(gone, "tscni-"), "NotFound")
          yield* expectReason(backend.deleteNftTable(gone, table), "NotFound")
        }))
    })

    describe("iptables", () => {
      const nat4 = { family: 4, table: "nat" } as const
      const empty = { chains: [], rules: [] }
      const post: IptablesChain = { name: "TSCNI-CT-POST", jumpFrom: [{ chain: "POSTROUTING", position: "append" }] }
      const masquerade = (comment: string, address: string): IptablesBatch => ({
        ...nat4,
        chains: [post],
        rules: [{ chain: "TSCNI-CT-POST", args: ["-s", `${address}/32`, "-j", "MASQUERADE"] }],
        comment
      })
      const jump = (from: string, chain: string, match: ReadonlyArray<string> = []) => ({
        chain: from,
        args: [...match, "-j", chain],
        comment: IPTABLES_JUMP_COMMENT
      })

      it("a chain is created and hooked once, shared by owners, and goes with its last rule and its jump", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
          yield* backend.addIptablesRules(a, masquerade("ct-owner-1", "10.99.9.2"))
          yield* backend.addIptablesRules(a, masquerade("ct-owner-2", "10.99.9.3"))
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual({
            chains: ["TSCNI-CT-POST"],
            rules: [
              jump("POSTROUTING", "TSCNI-CT-POST"),
              { chain: "TSCNI-CT-POST", args: ["-s", "10.99.9.2/32", "-j", "MASQUERADE"], comment: "ct-owner-1" },
              { chain: "TSCNI-CT-POST", args: ["-s", "10.99.9.3/32", "-j", "MASQUERADE"], comment: "ct-owner-2" }
            ]
          })
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-1" })
          expect((yield* backend.listIptablesRules(a, nat4)).rules.map((r) => r.comment)).toEqual([IPTABLES_JUMP_COMMENT, "ct-owner-2"])
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-1" })
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-2" })
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-2" })
          // a table iptables does not have is refused by listing and deleting alike
          const nope = { ...nat4, table: "nope" as IptablesTable }
          yield* expectReason(backend.listIptablesRules(a, nope), "Invalid")
          yield* expectReason(backend.deleteIptablesRules(a, { ...nope, comment: "ct-owner-2" }), "Invalid")
          // the same owner again starts from scratch
          yield* backend.addIptablesRules(a, masquerade("ct-owner-2", "10.99.9.3"))
          expect((yield* backend.listIptablesRules(a, nat4)).rules).toHaveLength(2)
        }))

      it("insert puts a batch's rules at the top in batch order; jumps may match and be inserted", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const local = ["-m", "addrtype", "--dst-type", "LOCAL"]
          const dnat: IptablesChain = {
            name: "TSCNI-CT-DNAT",
            jumpFrom: [{ chain: "PREROUTING", position: "insert", match: local }, { chain: "OUTPUT", position: "append", match: local }]
          }
          const rule = (port: number, address: string) => ({
            chain: "TSCNI-CT-DNAT",
            args: ["-p", "tcp", "-m", "tcp", "--dport", String(port), "-j", "DNAT", "--to-destination", `${address}:80`],
            position: "insert" as const
          })
          yield* backend.addIptablesRules(a, { ...nat4, chains: [dnat], rules: [rule(8080, "10.99.9.2")], comment: "ct-owner-1" })
          yield* backend.addIptablesRules(a, {
            ...nat4,
            chains: [dnat],
            rules: [rule(8081, "10.99.9.3"), { ...rule(8082, "10.99.9.3"), position: "append" }, rule(8083, "10.99.9.3")],
            comment: "ct-owner-2"
          })
          const listed = yield* backend.listIptablesRules(a, nat4)
          expect(listed.rules.map((r) => [r.chain, r.args.join(" "), r.comment])).toEqual([
            ["PREROUTING", "-m addrtype --dst-type LOCAL -j TSCNI-CT-DNAT", IPTABLES_JUMP_COMMENT],
            ["OUTPUT", "-m addrtype --dst-type LOCAL -j TSCNI-CT-DNAT", IPTABLES_JUMP_COMMENT],
            ["TSCNI-CT-DNAT", "-p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.99.9.3:80", "ct-owner-2"],
            ["TSCNI-CT-DNAT", "-p tcp -m tcp --dport 8083 -j DNAT --to-destination 10.99.9.3:80", "ct-owner-2"],
            ["TSCNI-CT-DNAT", "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.9.2:80", "ct-owner-1"],
            ["TSCNI-CT-DNAT", "-p tcp -m tcp --dport 8082 -j DNAT --to-destination 10.99.9.3:80", "ct-owner-2"]
          ])
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-2" })
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-1" })
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
        }))

      it("a batch's chains may jump into each other; a jump to a missing chain is NotFound and adds nothing", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const chains: ReadonlyArray<IptablesChain> = [post, { name: "TSCNI-CT-MARKED" }]
          const missing: IptablesBatch = {
            ...nat4,
            chains,
            rules: [{ chain: "TSCNI-CT-POST", args: ["-s", "10.99.9.2/32", "-j", "TSCNI-CT-NOPE"] }],
            comment: "ct-owner-1"
          }
          yield* expectReason(backend.addIptablesRules(a, missing), "NotFound")
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
          yield* backend.addIptablesRules(a, {
            ...missing,
            rules: [
              { chain: "TSCNI-CT-MARKED", args: ["-j", "MASQUERADE"] },
              { chain: "TSCNI-CT-POST", args: ["-m", "mark", "--mark", "0x2000/0x2000", "-j", "TSCNI-CT-MARKED"] }
            ]
          })
          expect((yield* backend.listIptablesRules(a, nat4)).chains).toEqual(["TSCNI-CT-MARKED", "TSCNI-CT-POST"])
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-1" })
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
        }))

      it("invalid batches are refused as a whole, before anything is added", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const good = masquerade("ct-owner-1", "10.99.9.2")
          const rule = good.rules[0]!
          const bad: ReadonlyArray<IptablesBatch> = [
            { ...good, chains: [{ name: "POSTROUTING" }], rules: [{ ...rule, chain: "POSTROUTING" }] },
            { ...good, chains: [{ name: "TSCNI-" + "X".repeat(23) }], rules: [{ ...rule, chain: "TSCNI-" + "X".repeat(23) }] },
            { ...good, rules: [{ ...rule, chain: "TSCNI-CT-OTHER" }] },
            { ...good, chains: [{ name: "TSCNI-CT-POST", jumpFrom: [{ chain: "FORWARD", position: "append" }] }] },
            { ...good, comment: IPTABLES_JUMP_COMMENT },
            { ...good, comment: "has space" },
            { ...good, rules: [{ ...rule, args: ["-m", "comment", "--comment", "mine", "-j", "ACCEPT"] }] },
            { ...good, rules: [{ ...rule, args: ["-j", "ACCEPT\n-F POSTROUTING"] }] },
            { ...good, rules: [{ ...rule, args: ["-s", "10.99.9.2", "-j", "ACCEPT\n"] }] },
            { ...good, rules: [] },
            { ...good, rules: [rule, { ...rule, args: [] }] }
          ]
          for (const batch of bad) yield* expectReason(backend.addIptablesRules(a, batch), "Invalid")
          yield* expectReason(backend.deleteIptablesRules(a, { ...nat4, comment: "no spaces please" }), "Invalid")
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
        }))

      it("families and tables are separate", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.addIptablesRules(a, masquerade("ct-owner-1", "10.99.9.2"))
          yield* backend.addIptablesRules(a, {
            family: 6,
            table: "nat",
            chains: [post],
            rules: [{ chain: "TSCNI-CT-POST", args: ["-s", "fd00:99::2/128", "-j", "MASQUERADE"] }],
            comment: "ct-owner-1"
          })
          yield* backend.addIptablesRules(a, {
            family: 4,
            table: "filter",
            chains: [{ name: "TSCNI-CT-FWD", jumpFrom: [{ chain: "FORWARD", position: "insert" }] }],
            rules: [{ chain: "TSCNI-CT-FWD", args: ["-d", "10.99.9.2/32", "-j", "ACCEPT"] }],
            comment: "ct-owner-1"
          })
          expect((yield* backend.listIptablesRules(a, { family: 6, table: "nat" })).rules.map((r) => r.args.join(" "))).toEqual([
            "-j TSCNI-CT-POST",
            "-s fd00:99::2/128 -j MASQUERADE"
          ])
          expect((yield* backend.listIptablesRules(a, { family: 4, table: "filter" })).chains).toEqual(["TSCNI-CT-FWD"])
          expect(yield* backend.listIptablesRules(a, { family: 6, table: "filter" })).toEqual(empty)
          yield* backend.deleteIptablesRules(a, { ...nat4, comment: "ct-owner-1" })
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
          expect((yield* backend.listIptablesRules(a, { family: 6, table: "nat" })).rules).toHaveLength(2)
          expect((yield* backend.listIptablesRules(a, { family: 4, table: "filter" })).rules).toHaveLength(2)
          yield* backend.deleteIptablesRules(a, { family: 6, table: "nat", comment: "ct-owner-1" })
          yield* backend.deleteIptablesRules(a, { family: 4, table: "filter", comment: "ct-owner-1" })
          expect(yield* backend.listIptablesRules(a, { family: 6, table: "nat" })).toEqual(empty)
          expect(yield* backend.listIptablesRules(a, { family: 4, table: "filter" })).toEqual(empty)
        }))

      const podBatch = (comment: string, key: string, address: string): IptablesPodBatch => ({
        ...nat4,
        comment,
        chains: [
          { name: `TSCNI-CT-M-${key}`, entry: { name: "TSCNI-CT-MASQ", jumpFrom: [{ chain: "POSTROUTING", position: "append" }] }, rules: [["-s", `${address}/32`, "-j", "MASQUERADE"]] },
          {
            name: `TSCNI-CT-D-${key}`,
            entry: { name: "TSCNI-CT-HP", jumpFrom: [{ chain: "PREROUTING", position: "append", match: ["-m", "addrtype", "--dst-type", "LOCAL"] }] },
            position: "insert",
            rules: [["-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", `${address}:80`]]
          }
        ]
      })
      const podChains = (comment: string, key: string) => ({
        ...nat4,
        comment,
        chains: [{ name: `TSCNI-CT-M-${key}`, entry: "TSCNI-CT-MASQ" }, { name: `TSCNI-CT-D-${key}`, entry: "TSCNI-CT-HP" }]
      })

      it("an owner's chains: shared chains made and hooked once, jumps by owner, removed by name", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          yield* backend.addIptablesPodChains(a, podBatch("ct-owner-1", "A1", "10.99.9.2"))
          yield* backend.addIptablesPodChains(a, podBatch("ct-owner-2", "B2", "10.99.9.3"))
          yield* expectReason(backend.addIptablesPodChains(a, podBatch("ct-owner-2", "B2", "10.99.9.3")), "AlreadyExists")
          const listed = yield* backend.listIptablesRules(a, nat4)
          expect(listed.chains).toEqual(["TSCNI-CT-D-A1", "TSCNI-CT-D-B2", "TSCNI-CT-HP", "TSCNI-CT-M-A1", "TSCNI-CT-M-B2", "TSCNI-CT-MASQ"])
          expect(listed.rules.map((r) => [r.chain, r.args.join(" "), r.comment])).toEqual([
            ["PREROUTING", "-m addrtype --dst-type LOCAL -j TSCNI-CT-HP", IPTABLES_JUMP_COMMENT],
            ["POSTROUTING", "-j TSCNI-CT-MASQ", IPTABLES_JUMP_COMMENT],
            ["TSCNI-CT-D-A1", "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.9.2:80", ""],
            ["TSCNI-CT-D-B2", "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.9.3:80", ""],
            // inserted: the newest owner's first
            ["TSCNI-CT-HP", "-j TSCNI-CT-D-B2", "ct-owner-2"],
            ["TSCNI-CT-HP", "-j TSCNI-CT-D-A1", "ct-owner-1"],
            ["TSCNI-CT-M-A1", "-s 10.99.9.2/32 -j MASQUERADE", ""],
            ["TSCNI-CT-M-B2", "-s 10.99.9.3/32 -j MASQUERADE", ""],
            ["TSCNI-CT-MASQ", "-j TSCNI-CT-M-A1", "ct-owner-1"],
            ["TSCNI-CT-MASQ", "-j TSCNI-CT-M-B2", "ct-owner-2"]
          ])
          // the named chains alone, as CHECK and GC read them
          const some = yield* backend.listIptablesChains(a, { ...nat4, chains: ["TSCNI-CT-MASQ", "TSCNI-CT-M-A1", "TSCNI-CT-NOPE"] })
          expect(some.chains).toEqual(["TSCNI-CT-M-A1", "TSCNI-CT-MASQ"])
          expect(some.rules.map((r) => [r.chain, r.args.join(" "), r.comment])).toEqual([
            ["TSCNI-CT-MASQ", "-j TSCNI-CT-M-A1", "ct-owner-1"],
            ["TSCNI-CT-MASQ", "-j TSCNI-CT-M-B2", "ct-owner-2"],
            ["TSCNI-CT-M-A1", "-s 10.99.9.2/32 -j MASQUERADE", ""]
          ])
          yield* backend.deleteIptablesPodChains(a, podChains("ct-owner-1", "A1"))
          yield* backend.deleteIptablesPodChains(a, podChains("ct-owner-1", "A1"))
          const after = yield* backend.listIptablesRules(a, nat4)
          expect(after.chains).toEqual(["TSCNI-CT-D-B2", "TSCNI-CT-HP", "TSCNI-CT-M-B2", "TSCNI-CT-MASQ"])
          expect(after.rules.filter((r) => r.comment === "ct-owner-1")).toEqual([])
          // an owner without chains: nothing to do
          yield* backend.deleteIptablesPodChains(a, podChains("ct-owner-3", "C3"))
          // a chain another owner's jump still enters is not removed under it
          yield* expectReason(backend.deleteIptablesPodChains(a, { ...podChains("ct-owner-9", "B2"), chains: [{ name: "TSCNI-CT-M-B2", entry: "TSCNI-CT-MASQ" }] }), "Busy")
          expect((yield* backend.listIptablesRules(a, nat4)).chains).toEqual(["TSCNI-CT-D-B2", "TSCNI-CT-HP", "TSCNI-CT-M-B2", "TSCNI-CT-MASQ"])
          // a shared chain goes with its hooks only when nothing is in it
          const hp = podBatch("ct-owner-2", "B2", "10.99.9.3").chains[1]!.entry
          const masq = podBatch("ct-owner-2", "B2", "10.99.9.3").chains[0]!.entry
          expect(yield* backend.deleteIptablesChainIfEmpty(a, { ...nat4, chain: hp })).toBe(false)
          yield* backend.deleteIptablesPodChains(a, podChains("ct-owner-2", "B2"))
          expect((yield* backend.listIptablesRules(a, nat4)).chains).toEqual(["TSCNI-CT-HP", "TSCNI-CT-MASQ"])
          expect(yield* backend.deleteIptablesChainIfEmpty(a, { ...nat4, chain: hp })).toBe(true)
          expect(yield* backend.deleteIptablesChainIfEmpty(a, { ...nat4, chain: hp })).toBe(false)
          expect(yield* backend.deleteIptablesChainIfEmpty(a, { ...nat4, chain: masq })).toBe(true)
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
          // the first pod of an empty table says which shared chains it made
          expect(yield* backend.addIptablesPodChains(a, podBatch("ct-owner-1", "A1", "10.99.9.2"))).toEqual(["TSCNI-CT-MASQ", "TSCNI-CT-HP"])
          expect(yield* backend.addIptablesPodChains(a, podBatch("ct-owner-2", "B2", "10.99.9.3"))).toEqual([])
        }))

      it("per-owner chains refuse what does not fit, before anything is added", (backend) =>
        Effect.gen(function* () {
          const a = yield* netns
          const good = podBatch("ct-owner-1", "A1", "10.99.9.2")
          const chain = good.chains[0]!
          const bad: ReadonlyArray<IptablesPodBatch> = [
            { ...good, comment: "has space" },
            { ...good, comment: IPTABLES_JUMP_COMMENT },
            { ...good, chains: [{ ...chain, name: "POSTROUTING" }] },
            { ...good, chains: [{ ...chain, name: "TSCNI-CT-MASQ" }] },
            { ...good, chains: [chain, chain] },
            { ...good, chains: [{ ...chain, rules: [] }] },
            { ...good, chains: [{ ...chain, rules: [["-j", "ACCEPT\n-F POSTROUTING"]] }] },
            { ...good, chains: [{ ...chain, entry: { name: "TSCNI-CT-MASQ", jumpFrom: [{ chain: "FORWARD", position: "append" }] } }] }
          ]
          for (const batch of bad) yield* expectReason(backend.addIptablesPodChains(a, batch), "Invalid")
          yield* expectReason(backend.deleteIptablesPodChains(a, { ...podChains("ct-owner-1", "A1"), comment: "no spaces" }), "Invalid")
          expect(yield* backend.listIptablesRules(a, nat4)).toEqual(empty)
        }))

      it("a missing namespace is NotFound", (backend) =>
        Effect.gen(function* () {
          const gone = yield* backend.createNetns(uniqueNetnsName())
          yield* backend.deleteNetns(gone)
          yield* expectReason(backend.addIptablesRules(gone, masquerade("ct-owner-1", "10.99.9.2")), "NotFound")
          yield* expectReason(backend.deleteIptablesRules(gone, { ...nat4, comment: "ct-owner-1" }), "NotFound")
          yield* expectReason(backend.listIptablesRules(gone, nat4), "NotFound")
          yield* expectReason(backend.addIptablesPodChains(gone, podBatch("ct-owner-1", "A1", "10.99.9.2")), "NotFound")
          yield* expectReason(backend.deleteIptablesPodChains(gone, podChains("ct-owner-1", "A1")), "NotFound")
          yield* expectReason(backend.listIptablesChains(gone, { ...nat4, chains: ["TSCNI-CT-MASQ"] }), "NotFound")
        }))
    })
  })
}
