/**
 * The meta plugin on the real kernel: the compiled tscni-net in a test host, with a node
 * file written as the agent writes it. Observed with ip -j, the host-local store and the
 * saved delegate files; "nothing changed" with hostns.ts's observe().
 */
import { describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { binary, ipJson, podEnv } from "./harness.ts"
import { execIn, observe, scratchSpace, type TestHost } from "./hostns.ts"

const META = binary("tscni-net")
for (const delegate of ["bridge", "ptp", "host-local"]) binary(delegate)

type Json = Record<string, any>
const { host, pod } = scratchSpace()

const nodeFilePath = (h: TestHost) => join(h.dir, "run", "node.json")
const writeNodeFile = (h: TestHost, subnets: Array<string>, mtu = 1450) => {
  mkdirSync(join(h.dir, "run"), { recursive: true })
  writeFileSync(nodeFilePath(h), JSON.stringify({ node: "n1", subnets, networks: ["10.244.0.0/16"], mtu, backend: "vxlan" }))
}

const conf = (h: TestHost, extra: Json = {}): Json => ({
  cniVersion: "1.1.0",
  name: "cluster",
  type: "tscni-net",
  nodeFile: nodeFilePath(h),
  dataDir: join(h.dir, "delegates"),
  delegate: { bridge: "cni0", ipam: { dataDir: join(h.dir, "ipam") } },
  ...extra
})

const run = (h: TestHost, command: string, id: string, netns: string, c: Json) => execIn(h, META, podEnv(command, id, netns), JSON.stringify(c))

/** The host-local allocations of the network, by address. */
const allocations = (h: TestHost): Array<string> => {
  const dir = join(h.dir, "ipam", "cluster")
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d/.test(f)).sort() : []
}

describe("tscni-net", () => {
  test("without a node file: ADD is code 11 naming the node file and STATUS code 50, and nothing changes", () => {
    const h = host()
    const p = pod()
    const before = observe(h.name)
    const out = run(h, "ADD", "c1", p.path, conf(h))
    expect(out.exitCode).toBe(1)
    expect(out.json).toEqual({ cniVersion: "1.1.0", code: 11, msg: `tscni-net: no node file at ${nodeFilePath(h)}: the tscni agent has not leased a subnet for this node yet` })
    const status = run(h, "STATUS", "", "", conf(h))
    expect(status.json?.code).toBe(50)
    expect(observe(h.name)).toBe(before)
    expect(existsSync(join(h.dir, "delegates"))).toBe(false)
  })

  test("ADD renders bridge + host-local on the node's subnet with the node's MTU, keeps the delegate (0600), and CHECK and DEL use it after the node file changed", () => {
    const h = host()
    const p = pod()
    writeNodeFile(h, ["10.244.7.0/24"])
    const before = observe(h.name)
    const added = run(h, "ADD", "c2", p.path, conf(h))
    expect(added.exitCode).toBe(0)
    const result = added.json!
    expect(result.cniVersion).toBe("1.1.0")
    expect(result.ips).toEqual([expect.objectContaining({ address: "10.244.7.2/24", gateway: "10.244.7.1" })])
    const [eth0] = ipJson(p.name, "link", "show", "eth0") as Array<{ mtu: number }>
    expect(eth0!.mtu).toBe(1450)
    const routes = ipJson(p.name, "route", "show", "default") as Array<{ gateway: string }>
    expect(routes.map((r) => r.gateway)).toEqual(["10.244.7.1"])
    const saved = join(h.dir, "delegates", "cluster", "c2-eth0")
    expect(statSync(saved).mode & 0o777).toBe(0o600)
    const delegate = JSON.parse(readFileSync(saved, "utf8")) as Json
    expect(delegate).toEqual({
      cniVersion: "1.1.0",
      name: "cluster",
      type: "bridge",
      bridge: "cni0",
      isGateway: true,
      isDefaultGateway: true,
      ipMasq: false,
      mtu: 1450,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.244.7.0/24" }]], dataDir: join(h.dir, "ipam") }
    })
    expect(allocations(h)).toEqual(["10.244.7.2"])
    // the node's subnet changes (a lease lost and claimed again): the pod's delegate does not
    writeNodeFile(h, ["10.244.9.0/24"])
    expect(run(h, "CHECK", "c2", p.path, conf(h, { prevResult: result })).exitCode).toBe(0)
    const deleted = run(h, "DEL", "c2", p.path, conf(h, { prevResult: result }))
    expect(deleted.exitCode).toBe(0)
    expect(allocations(h)).toEqual([])
    expect(existsSync(saved)).toBe(false)
    // a second DEL, and a DEL of an attachment never added, succeed and change nothing
    expect(run(h, "DEL", "c2", p.path, conf(h)).exitCode).toBe(0)
    expect(run(h, "DEL", "never", p.path, conf(h)).exitCode).toBe(0)
    const after = observe(h.name)
    // the bridge goes with its last pod; the host is as it was
    expect(after).toBe(before)
  })

  test("a delegate that fails leaves nothing: no saved delegate, no allocation, the host unchanged", () => {
    const h = host()
    const p = pod()
    writeNodeFile(h, ["10.244.7.0/24"])
    const before = observe(h.name)
    // ptp refuses an MTU below 68: the delegate fails after the delegate file was written
    const out = run(h, "ADD", "c3", p.path, conf(h, { delegate: { type: "ptp", mtu: 10, ipam: { dataDir: join(h.dir, "ipam") } } }))
    expect(out.exitCode).toBe(1)
    expect(out.json?.code).toBe(7)
    expect(existsSync(join(h.dir, "delegates", "cluster", "c3-eth0"))).toBe(false)
    expect(allocations(h)).toEqual([])
    expect(observe(h.name)).toBe(before)
  })

  test("a delegate file that cannot be saved fails the ADD before the delegate runs: code 5, nothing changed", () => {
    const h = host()
    const p = pod()
    writeNodeFile(h, ["10.244.7.0/24"])
    // dataDir under a regular file: the directory cannot be made
    writeFileSync(join(h.dir, "not-a-dir"), "")
    const before = observe(h.name)
    const out = run(h, "ADD", "c6", p.path, conf(h, { dataDir: join(h.dir, "not-a-dir", "delegates") }))
    expect(out.exitCode).toBe(1)
    expect(out.json?.code).toBe(5)
    expect(String(out.json?.msg)).toContain("saving the delegate")
    expect(allocations(h)).toEqual([])
    expect(observe(h.name)).toBe(before)
  })

  test("delegate.type ptp: the pod is routed by the host, with a default route from IPAM", () => {
    const h = host()
    const p = pod()
    writeNodeFile(h, ["10.244.8.0/24"])
    const added = run(h, "ADD", "c4", p.path, conf(h, { delegate: { type: "ptp", ipam: { dataDir: join(h.dir, "ipam") } } }))
    expect(added.exitCode).toBe(0)
    const routes = ipJson(p.name, "route", "show", "default") as Array<{ gateway: string }>
    expect(routes.map((r) => r.gateway)).toEqual(["10.244.8.1"])
    expect(run(h, "DEL", "c4", p.path, conf(h, { prevResult: added.json })).exitCode).toBe(0)
    expect(allocations(h)).toEqual([])
  })

  test("GC removes the saved delegates of attachments the runtime no longer has, and keeps the others", () => {
    const h = host()
    const [a, b] = [pod(), pod()]
    writeNodeFile(h, ["10.244.7.0/24"])
    expect(run(h, "ADD", "ga", a.path, conf(h)).exitCode).toBe(0)
    expect(run(h, "ADD", "gb", b.path, conf(h)).exitCode).toBe(0)
    const gc = run(h, "GC", "", "", conf(h, { "cni.dev/valid-attachments": [{ containerID: "ga", ifname: "eth0" }] }))
    expect(gc.exitCode).toBe(0)
    expect(readdirSync(join(h.dir, "delegates", "cluster"))).toEqual(["ga-eth0"])
    expect(allocations(h)).toEqual(["10.244.7.2"])
  })

  test("bad config: each error is code 7 and names its field, nothing changes", () => {
    const h = host()
    const p = pod()
    writeNodeFile(h, ["10.244.7.0/24"])
    const before = observe(h.name)
    const cases: Array<[Json, string]> = [
      [{ nodeFile: "run/node.json" }, "nodeFile"],
      [{ dataDir: "relative" }, "dataDir"],
      [{ delegate: { type: "../bridge" } }, "delegate.type"],
      [{ delegate: { type: "tscni-net" } }, "delegate.type"],
      [{ delegate: { name: "other" } }, "delegate.name"]
    ]
    for (const [extra, field] of cases) {
      const out = run(h, "ADD", "c5", p.path, conf(h, extra))
      expect({ field, code: out.json?.code, named: String(out.json?.msg).startsWith(field) }).toEqual({ field, code: 7, named: true })
    }
    expect(observe(h.name)).toBe(before)
  })
})
