/**
 * Parity with the reference plugins (Debian's containernetworking-plugins in /usr/lib/cni):
 * the same config, once with tscni's plugins and once with the reference's, in two pods of
 * one test host; what the kernel shows of each pod must be the same (read from /proc and
 * with ip, not with tscni).
 */
import { afterAll, describe, expect, test } from "bun:test"
import { BIN_DIR, binary, freshNetns, podEnv } from "./harness.ts"
import { execIn, freshHost, type TestHost } from "./hostns.ts"

type Json = Record<string, any>

const BRIDGE = binary("bridge")
binary("host-local")
binary("static")
const REFERENCE = "/usr/lib/cni"

const cleanups: Array<() => void> = []
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

const readProc = (netns: string, path: string): string =>
  Bun.spawnSync(["ip", "netns", "exec", netns, "cat", path], { stdout: "pipe", stderr: "pipe" }).stdout.toString().trim()

/** ADD with one plugin set (tscni's or the reference's) into a fresh pod; its arp_notify after. */
const arpNotifyAfterAdd = (h: TestHost, ours: boolean, conf: Json, id: string): string => {
  const pod = freshNetns()
  cleanups.push(pod.remove)
  const plugin = ours ? BRIDGE : `${REFERENCE}/bridge`
  const add = execIn(h, plugin, podEnv("ADD", id, pod.path, ours ? BIN_DIR : REFERENCE), JSON.stringify(conf))
  expect({ id, code: add.exitCode, err: add.stderr }).toEqual({ id, code: 0, err: "" })
  return readProc(pod.name, "/proc/sys/net/ipv4/conf/eth0/arp_notify")
}

describe("bridge parity with the reference", () => {
  const cases: Array<[string, (h: TestHost, n: number) => Json]> = [
    ["a gateway (host-local)", (h, n) => ({ isGateway: true, ipam: { type: "host-local", ranges: [[{ subnet: `10.132.${n}.0/24` }]], dataDir: h.dir } })],
    ["no gateway (host-local)", (h, n) => ({ ipam: { type: "host-local", ranges: [[{ subnet: `10.132.${n}.0/24` }]], dataDir: h.dir } })],
    ["static IPAM", (_h, n) => ({ ipam: { type: "static", addresses: [{ address: `10.132.${n}.5/24` }] } })],
    ["IPv6 only", (h, n) => ({ ipam: { type: "host-local", ranges: [[{ subnet: `fd13:${n}::/64` }]], dataDir: h.dir } })],
    ["no IPAM (L2 only)", () => ({ ipam: {} })]
  ]
  for (const [n, [label, ipam]] of cases.entries()) {
    test(`arp_notify on the pod interface: ${label}`, () => {
      const h = freshHost()
      cleanups.push(h.remove)
      const conf = (ours: boolean): Json => ({
        cniVersion: "1.0.0",
        name: ours ? `par${n}` : `ref${n}`,
        type: "bridge",
        bridge: ours ? `cni-par${n}` : `cni-ref${n}`,
        ...ipam(h, ours ? n : n + 100)
      })
      const ours = arpNotifyAfterAdd(h, true, conf(true), `par-${n}`)
      const theirs = arpNotifyAfterAdd(h, false, conf(false), `ref-${n}`)
      expect({ label, ours }).toEqual({ label, ours: theirs })
    })
  }
})
