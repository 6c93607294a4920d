import { attachmentKey } from "@tscni/steps"
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, readdirSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { binary, freshNetns, ip, ipJson, kernelKillSweep } from "./harness.ts"
import { execIn, freshHost, observe, spawnIn, type TestHost } from "./hostns.ts"

const TUNING = binary("tuning")
const REFERENCE_TUNING = "/usr/lib/cni/tuning"
const DRIVER = resolve(import.meta.dir, "fault-driver.ts")

type Json = Record<string, any>

const cleanups: Array<() => void> = []
// every namespace this file makes is removed at its end, whatever happened (removing twice is fine)
afterAll(() => cleanups.reverse().forEach((cleanup) => cleanup()))

/** The runtime's side: a test host, with a scratch dir for state files and the allowlist. */
const host = () => {
  const h = freshHost()
  cleanups.push(h.remove)
  return h
}

const POD_MAC = "0a:58:0a:7b:00:02"

/** A pod namespace whose eth0 is a veth to the test host, as a bridge or ptp plugin leaves it. */
const pod = (h: TestHost, id: string) => {
  const ns = freshNetns()
  cleanups.push(ns.remove)
  ip("-n", h.name, "link", "add", `veth-${id}`, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
  ip("-n", ns.name, "link", "set", "eth0", "address", POD_MAC)
  ip("-n", ns.name, "link", "set", "eth0", "up")
  return ns
}

const prevResult = (netns: string, version = "1.0.0"): Json => ({
  cniVersion: version,
  interfaces: [{ name: "veth-host", mac: "0a:58:0a:7b:00:01" }, { name: "eth0", mac: POD_MAC, sandbox: netns }],
  ips: [{ address: "10.123.0.2/24", gateway: "10.123.0.1", interface: 1, ...(version < "1.0.0" ? { version: "4" } : {}) }]
})

const conf = (h: TestHost, extra: Json = {}): Json => ({
  cniVersion: "1.0.0",
  name: "tunenet",
  type: "tuning",
  dataDir: join(h.dir, "tuning"),
  sysctl: { "net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv4.conf.all.arp_ignore": "2", "net.core.somaxconn": "1000" },
  mac: "c2:b0:57:49:47:f1",
  mtu: 1400,
  promisc: true,
  allmulti: true,
  txQLen: 2000,
  ...extra
})

const env = (h: TestHost, command: string, id: string, netns: string) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: id,
  CNI_NETNS: netns,
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
  // an allowlist of the test's own, absent unless a test writes it
  TSCNI_TUNING_ALLOWLIST: join(h.dir, "allowlist.conf")
})

/** A sysctl as the pod's namespace shows it, read with cat, not with tscni. */
const sysctl = (netns: string, path: string): string =>
  Bun.spawnSync(["ip", "netns", "exec", netns, "cat", `/proc/sys/${path}`]).stdout.toString().trim()

const SYSCTLS = ["net/ipv4/conf/eth0/arp_notify", "net/ipv4/conf/all/arp_ignore", "net/core/somaxconn"]

/** Everything tuning may change in the pod: the link (ip -j -d) and the sysctls. */
const podState = (netns: string) => {
  const [link] = ipJson<Array<Json>>(netns, "-d", "link", "show", "eth0")
  return {
    link: { address: link!.address, mtu: link!.mtu, txqlen: link!.txqlen, flags: link!.flags, promiscuity: link!.promiscuity, allmulti: link!.allmulti },
    sysctls: Object.fromEntries(SYSCTLS.map((path) => [path, sysctl(netns, path)])),
    all: observe(netns)
  }
}

const stateFiles = (h: TestHost): Array<string> => {
  const dir = join(h.dir, "tuning", "tunenet")
  return existsSync(dir) ? readdirSync(dir) : []
}

describe("tuning on the real kernel", () => {
  test("ADD tunes the pod's eth0 and sysctls; CHECK; DEL puts every previous value back", () => {
    const h = host()
    const p = pod(h, "t1")
    const hostBefore = observe(h.name)
    const before = podState(p.name)
    expect(before.link.address).toBe(POD_MAC)

    const add = execIn(h, TUNING, env(h, "ADD", "it-t1", p.path), JSON.stringify(conf(h, { prevResult: prevResult(p.path) })))
    expect([add.exitCode, add.stderr]).toEqual([0, ""])
    expect((add.json!.interfaces as Array<Json>)[1]).toEqual({ name: "eth0", mac: "c2:b0:57:49:47:f1", sandbox: p.path })
    expect(add.json!.ips).toEqual(prevResult(p.path).ips)

    const [link] = ipJson<Array<Json>>(p.name, "-d", "link", "show", "eth0")
    expect(link).toMatchObject({ address: "c2:b0:57:49:47:f1", mtu: 1400, txqlen: 2000 })
    expect(link!.flags).toEqual(expect.arrayContaining(["PROMISC", "ALLMULTI"]))
    expect(SYSCTLS.map((path) => sysctl(p.name, path))).toEqual(["1", "2", "1000"])
    expect(stateFiles(h)).toEqual([`${attachmentKey("it-t1", "eth0")}.json`])
    // the test host (where the plugin ran) is untouched
    expect(observe(h.name)).toBe(hostBefore)

    const check = () => execIn(h, TUNING, env(h, "CHECK", "it-t1", p.path), JSON.stringify(conf(h, { prevResult: add.json })))
    expect([check().exitCode, check().stdout]).toEqual([0, ""])
    ip("-n", p.name, "link", "set", "eth0", "mtu", "1500")
    const broken = check()
    expect([broken.exitCode, String(broken.json?.msg)]).toEqual([1, expect.stringContaining("mtu is 1500, expected 1400")])
    ip("-n", p.name, "link", "set", "eth0", "mtu", "1400")
    Bun.spawnSync(["ip", "netns", "exec", p.name, "sh", "-c", "echo 0 > /proc/sys/net/core/somaxconn"])
    expect(String(check().json?.msg)).toContain("net.core.somaxconn")
    Bun.spawnSync(["ip", "netns", "exec", p.name, "sh", "-c", "echo 1000 > /proc/sys/net/core/somaxconn"])
    expect(check().exitCode).toBe(0)

    const del = execIn(h, TUNING, env(h, "DEL", "it-t1", p.path), JSON.stringify(conf(h, { prevResult: add.json })))
    expect([del.exitCode, del.stdout, del.stderr]).toEqual([0, "", ""])
    expect(podState(p.name)).toEqual(before)
    expect(stateFiles(h)).toEqual([])
    p.remove()
  })

  for (const version of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    test(`cniVersion ${version}: prevResult back in that version, DEL restores`, () => {
      const h = host()
      const p = pod(h, "tv")
      const before = podState(p.name)
      const c = conf(h, { cniVersion: version })
      const add = execIn(h, TUNING, env(h, "ADD", "it-tv", p.path), JSON.stringify({ ...c, prevResult: prevResult(p.path, version) }))
      expect(add.exitCode).toBe(0)
      expect(add.json!.cniVersion).toBe(version)
      expect((add.json!.ips as Array<Json>)[0]!.version).toBe(version < "1.0.0" ? "4" : undefined)
      expect(execIn(h, TUNING, env(h, "DEL", "it-tv", p.path), JSON.stringify({ ...c, prevResult: add.json })).exitCode).toBe(0)
      expect(podState(p.name)).toEqual(before)
      p.remove()
    })
  }

  test("DEL with the namespace gone, twice, and without ADD succeeds and leaves no state", () => {
    const h = host()
    const p = pod(h, "tg")
    const add = execIn(h, TUNING, env(h, "ADD", "it-tg", p.path), JSON.stringify(conf(h, { prevResult: prevResult(p.path) })))
    expect(add.exitCode).toBe(0)
    expect(stateFiles(h)).toEqual([`${attachmentKey("it-tg", "eth0")}.json`])
    p.remove()
    for (const netns of [p.path, ""]) {
      const del = execIn(h, TUNING, env(h, "DEL", "it-tg", netns), JSON.stringify(conf(h, { prevResult: add.json })))
      expect([del.exitCode, del.stdout]).toEqual([0, ""])
    }
    expect(stateFiles(h)).toEqual([])
    expect(execIn(h, TUNING, env(h, "DEL", "it-never", ""), JSON.stringify(conf(h))).exitCode).toBe(0)
  })

  test("SIGKILL at every Backend call of ADD, then DEL: the pod is back as it was and no state file is left (the state file is written before any change)", async () => {
    const h = host()
    const p = pod(h, "tk")
    const hostBefore = observe(h.name)
    const before = podState(p.name)
    const c = JSON.stringify(conf(h, { prevResult: prevResult(p.path) }))
    // the ADD runs through fault-driver.ts, which stops itself right before Backend call k:
    // the same tuning code on the same LinuxBackend as dist/bin/tuning, so a SIGKILL there is
    // a SIGKILL of the plugin at that call
    const { ops, left } = await kernelKillSweep(
      (k) => spawnIn(h, ["bun", DRIVER, "tuning", String(k), "pause"], env(h, "ADD", "it-tk", p.path), c),
      (k) => {
        const del = execIn(h, TUNING, env(h, "DEL", "it-tk", p.path), JSON.stringify(conf(h)))
        expect({ k, code: del.exitCode, stdout: del.stdout }).toEqual({ k, code: 0, stdout: "" })
      },
      (k) => {
        expect({ k, pod: podState(p.name) }).toEqual({ k, pod: before })
        expect({ k, files: stateFiles(h) }).toEqual({ k, files: [] })
        expect({ k, host: observe(h.name) }).toEqual({ k, host: hostBefore })
      },
      () => stateFiles(h).length > 0 || JSON.stringify(podState(p.name)) !== JSON.stringify(before)
    )
    // the kills fell on the calls that change the pod (sysctls, then the link); a kill
    // before the first change left nothing, and every kill from it on (the state file is
    // written just before it) left DEL something to put back
    expect(ops).toEqual(expect.arrayContaining(["writeSysctl", "setLink"]))
    const firstChange = ops.findIndex((op) => op === "writeSysctl" || op === "setLink") + 1
    expect(left).toEqual(ops.map((_, i) => i + 1).filter((k) => k >= firstChange))
    p.remove()
  }, 120_000)

  test("the allowlist refuses a key none of its patterns match, before any change", () => {
    const h = host()
    const p = pod(h, "ta")
    writeFileSync(join(h.dir, "allowlist.conf"), "^net\\.ipv4\\.conf\\.IFNAME\\.arp_notify$\n^net\\.core\\..*\n")
    const before = podState(p.name)
    const refused = execIn(h, TUNING, env(h, "ADD", "it-ta", p.path), JSON.stringify(conf(h, { prevResult: prevResult(p.path) })))
    expect([refused.exitCode, refused.json?.code]).toEqual([1, 7])
    expect(String(refused.json?.msg)).toContain("net.ipv4.conf.all.arp_ignore")
    expect(podState(p.name)).toEqual(before)
    expect(stateFiles(h)).toEqual([])
    const sysctlOk = { "net.ipv4.conf.IFNAME.arp_notify": "1", "net.core.somaxconn": "900" }
    const allowed = execIn(h, TUNING, env(h, "ADD", "it-ta", p.path), JSON.stringify(conf(h, { sysctl: sysctlOk, prevResult: prevResult(p.path) })))
    expect(allowed.exitCode).toBe(0)
    expect(sysctl(p.name, "net/core/somaxconn")).toBe("900")
    p.remove()
  })

  test("GC removes the state of attachments the runtime no longer knows", () => {
    const h = host()
    const pods = ["g1", "g2"].map((id) => ({ id, ns: pod(h, id) }))
    for (const { id, ns } of pods) {
      expect(execIn(h, TUNING, env(h, "ADD", `it-${id}`, ns.path), JSON.stringify(conf(h, { prevResult: prevResult(ns.path) }))).exitCode).toBe(0)
    }
    const gc = execIn(h, TUNING, { CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, JSON.stringify({
      ...conf(h),
      cniVersion: "1.1.0",
      "cni.dev/valid-attachments": [{ containerID: "it-g2", ifname: "eth0" }]
    }))
    expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
    expect(stateFiles(h)).toEqual([`${attachmentKey("it-g2", "eth0")}.json`])
    pods.forEach(({ ns }) => ns.remove())
  })

  test("same result as the reference tuning plugin (Debian containernetworking-plugins) for the same config", () => {
    const h = host()
    const ours = pod(h, "ro")
    const theirs = pod(h, "rt")
    // the reference 1.1.1 has no txQLen; its dataDir is its own
    const c = conf(h, { txQLen: undefined, dataDir: undefined })
    const mine = execIn(h, TUNING, env(h, "ADD", "it-ro", ours.path), JSON.stringify({ ...c, dataDir: join(h.dir, "tuning"), prevResult: prevResult(ours.path) }))
    const reference = execIn(h, REFERENCE_TUNING, env(h, "ADD", "it-rt", theirs.path), JSON.stringify({ ...c, dataDir: join(h.dir, "ref"), prevResult: prevResult(theirs.path) }))
    expect([mine.exitCode, reference.exitCode]).toEqual([0, 0])
    const strip = (state: ReturnType<typeof podState>) => ({ ...state, all: undefined })
    expect(strip(podState(ours.name))).toEqual(strip(podState(theirs.name)))
    expect((mine.json!.interfaces as Array<Json>)[1]).toEqual({ ...(reference.json!.interfaces as Array<Json>)[1], sandbox: ours.path })
    ours.remove()
    theirs.remove()
  })
})
