/**
 * The resident tscni: `tscni daemon` serving the calls the multicall binary forwards, on the
 * real kernel, in a test namespace standing in for the host. What must hold: a served call
 * is the same call a process would make; no daemon (or a dead one) changes nothing; a caller
 * the daemon must not serve (another namespace) runs its call itself; a pod path bound to a
 * new namespace is not confused with the old one; a caller killed mid-ADD gets its ADD
 * rolled back by the daemon. Observed with ip -j and util-linux flock, not with tscni.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { binary, freshNetns, ip, ipJson, podEnv } from "./harness.ts"
import { execIn, freshHost, observe, observeAfterDel, settle, spawnIn, type TestHost } from "./hostns.ts"

type Json = Record<string, any>

const scratch = mkdtempSync(join(tmpdir(), "tscni-resident-"))
const binDir = join(scratch, "bin")
mkdirSync(binDir)
for (const name of ["tscni", "bridge", "host-local"]) symlinkSync(binary("tscni"), join(binDir, name))
const BRIDGE = join(binDir, "bridge")
const SOCKET = join(scratch, "daemon.sock")
const SERVED = "served by the tscni daemon"

const hosts: Array<TestHost> = []
const host = () => {
  const h = freshHost()
  hosts.push(h)
  return h
}

const conf = (h: TestHost, subnet = "10.124.0.0/24"): Json => ({
  cniVersion: "1.0.0",
  name: "resnet",
  type: "bridge",
  bridge: "cni-res0",
  isGateway: true,
  ipMasq: true,
  ipam: { type: "host-local", ranges: [[{ subnet }]], dataDir: h.dir }
})

/** The call env a runtime gives, with the daemon's socket and debug logs (which say who served the call). */
const callEnv = (command: string, id: string, netns: string, socket = SOCKET) => ({
  ...podEnv(command, id, netns, binDir),
  TSCNI_DAEMON_SOCKET: socket,
  TSCNI_LOG: "debug"
})

const waitFor = async (what: string, ok: () => boolean, ms = 5000) => {
  const until = Date.now() + ms
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(10)
  }
}

/** A daemon of its own in `h` on `socket`, up when this resolves. */
const startDaemon = async (h: TestHost, socket: string) => {
  const started = spawnIn(h, [join(binDir, "tscni"), "daemon", "--socket", socket, "--health-listen", "off"], {}, "")
  await waitFor(`the daemon on ${socket}`, () => existsSync(socket))
  return started
}

/**
 * Holds host-local's store lock of `h` (as the reference takes it, with util-linux flock) so
 * an ADD stops in ipamAllocate, after the bridge and the veth were made. `cat` holds it
 * until `release` closes its stdin (killing flock alone would leave the lock with its child).
 */
const holdStoreLock = async (h: TestHost) => {
  mkdirSync(join(h.dir, "resnet"), { recursive: true })
  const lock = join(h.dir, "resnet", "lock")
  const holder = Bun.spawn(["flock", lock, "cat"], { stdin: "pipe", stdout: "ignore" })
  await waitFor("the store lock", () => Bun.spawnSync(["flock", "-n", lock, "true"]).exitCode !== 0)
  return {
    release: async () => {
      void holder.stdin.end()
      await holder.exited
    }
  }
}

const vethsOn = (h: TestHost) => ipJson<Array<Json>>(h.name, "link", "show", "type", "veth").length

let daemonHost: TestHost
let daemon: ReturnType<typeof spawnIn>

beforeAll(async () => {
  daemonHost = host()
  daemon = await startDaemon(daemonHost, SOCKET)
})

afterAll(async () => {
  daemon.proc.kill("SIGTERM")
  await daemon.done
  hosts.forEach((h) => h.remove())
  rmSync(scratch, { recursive: true, force: true })
})

describe("resident tscni (tscni daemon)", () => {
  test("ADD, CHECK and DEL through the multicall binary are served by the daemon, with the same result as a process", () => {
    const h = daemonHost
    const p = freshNetns()
    const before = observe(h.name)
    const add = execIn(h, BRIDGE, callEnv("ADD", "res-1", p.path), JSON.stringify(conf(h)))
    expect([add.exitCode, add.stderr.includes(SERVED)]).toEqual([0, true])
    expect(add.json?.ips).toEqual([{ address: "10.124.0.2/24", gateway: "10.124.0.1", interface: 2 }])
    const [eth0] = ipJson<Array<Json>>(p.name, "addr", "show", "eth0")
    expect(eth0!.addr_info.map((a: Json) => `${a.local}/${a.prefixlen}`)).toContain("10.124.0.2/24")
    expect(ipJson<Array<Json>>(h.name, "link", "show", "cni-res0")).toHaveLength(1)
    const check = execIn(h, BRIDGE, callEnv("CHECK", "res-1", p.path), JSON.stringify({ ...conf(h), prevResult: add.json }))
    expect([check.exitCode, check.stdout, check.stderr.includes(SERVED)]).toEqual([0, "", true])
    const del = execIn(h, BRIDGE, callEnv("DEL", "res-1", p.path), JSON.stringify({ ...conf(h), prevResult: add.json }))
    expect([del.exitCode, del.stderr.includes(SERVED)]).toEqual([0, true])
    expect(observeAfterDel(h.name)).toEqual(before)
    p.remove()
  })

  test("a config error is answered by the daemon exactly as by a process: code, message, exit status, nothing changed", () => {
    const h = daemonHost
    const p = freshNetns()
    const before = observe(h.name)
    const bad = { ...conf(h), mtu: "nine" }
    const served = execIn(h, BRIDGE, callEnv("ADD", "res-bad", p.path), JSON.stringify(bad))
    const inProcess = execIn(h, BRIDGE, callEnv("ADD", "res-bad", p.path, join(scratch, "none.sock")), JSON.stringify(bad))
    expect(served.stderr.includes(SERVED)).toBe(true)
    expect(inProcess.stderr.includes(SERVED)).toBe(false)
    expect({ exit: served.exitCode, out: served.json }).toEqual({ exit: inProcess.exitCode, out: inProcess.json })
    expect(served.json).toMatchObject({ code: 7 })
    expect(observe(h.name)).toEqual(before)
    p.remove()
  })

  test("no daemon at the socket path, or a dead daemon's socket file: the call runs in the process", () => {
    const h = daemonHost
    const stale = join(scratch, "stale.sock")
    // a unix socket file nobody listens on, as a killed daemon leaves it
    const made = Bun.spawnSync(["python3", "-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`])
    expect([made.exitCode, existsSync(stale)]).toEqual([0, true])
    for (const socket of [join(scratch, "none.sock"), stale]) {
      const p = freshNetns()
      const add = execIn(h, BRIDGE, callEnv("ADD", "res-2", p.path, socket), JSON.stringify(conf(h)))
      expect({ socket, exit: add.exitCode, served: add.stderr.includes(SERVED), loaded: add.stderr.includes("code loaded") }).toEqual({
        socket,
        exit: 0,
        served: false,
        loaded: true
      })
      expect(execIn(h, BRIDGE, callEnv("DEL", "res-2", p.path, socket), JSON.stringify(conf(h))).exitCode).toBe(0)
      p.remove()
    }
  })

  test("a caller in another network namespace than the daemon's is not served: its bridge is made in its own host", () => {
    const other = host()
    const p = freshNetns()
    const add = execIn(other, BRIDGE, callEnv("ADD", "res-3", p.path), JSON.stringify(conf(other)))
    expect([add.exitCode, add.stderr.includes(SERVED)]).toEqual([0, false])
    expect(ipJson<Array<Json>>(other.name, "link", "show", "cni-res0")).toHaveLength(1)
    expect(Bun.spawnSync(["ip", "-n", daemonHost.name, "link", "show", "cni-res0"]).exitCode).not.toBe(0)
    expect(execIn(other, BRIDGE, callEnv("DEL", "res-3", p.path), JSON.stringify(conf(other))).exitCode).toBe(0)
    p.remove()
  })

  test("a pod path bound to a new namespace between calls: the daemon acts on the new one", () => {
    const h = daemonHost
    const p = freshNetns()
    const first = execIn(h, BRIDGE, callEnv("ADD", "res-4", p.path), JSON.stringify(conf(h)))
    expect([first.exitCode, first.stderr.includes(SERVED)]).toEqual([0, true])
    expect(execIn(h, BRIDGE, callEnv("DEL", "res-4", p.path), JSON.stringify(conf(h))).exitCode).toBe(0)
    // the runtime deletes the sandbox and makes a new one at the same path
    ip("netns", "delete", p.name)
    ip("netns", "add", p.name)
    const again = execIn(h, BRIDGE, callEnv("ADD", "res-4", p.path), JSON.stringify(conf(h)))
    expect([again.exitCode, again.stderr.includes(SERVED)]).toEqual([0, true])
    const address = (again.json?.ips as Array<Json>)[0]!.address as string
    expect(ipJson<Array<Json>>(p.name, "addr", "show", "eth0")[0]!.addr_info.map((a: Json) => `${a.local}/${a.prefixlen}`)).toContain(address)
    expect(execIn(h, BRIDGE, callEnv("DEL", "res-4", p.path), JSON.stringify(conf(h))).exitCode).toBe(0)
    p.remove()
  })

  test("the caller killed while the daemon runs its ADD: the daemon rolls the ADD back, without any DEL", async () => {
    const h = daemonHost
    const p = freshNetns()
    settle(h.name)
    const before = observe(h.name)
    const lock = await holdStoreLock(h)
    const caller = spawnIn(h, BRIDGE, callEnv("ADD", "res-5", p.path), JSON.stringify(conf(h)))
    await waitFor("the ADD's veth", () => vethsOn(h) > 0)
    caller.proc.kill("SIGKILL")
    await caller.done
    // the lock wait is not interruptible (a lock is either had or not): the interruption
    // takes effect when the lock is free, and undoes the ADD instead of going on with it
    await lock.release()
    await waitFor("the rollback", () => vethsOn(h) === 0, 20_000)
    // the veth goes first; the rest of the rollback follows: wait (paced, with a deadline)
    // until the host is back, and a rollback that never gets there fails with what is left
    const podLinks = () => ipJson<Array<Json>>(p.name, "link", "show").map((link) => link.ifname)
    await waitFor("the rest of the rollback", () => observe(h.name) === before && podLinks().join() === "lo", 20_000).catch(() => {})
    expect(observe(h.name)).toEqual(before)
    expect(podLinks()).toEqual(["lo"])
    p.remove()
  }, 60_000)

  test("20 ADDs at once through the daemon get 20 distinct addresses; 20 DELs at once leave the host as before", async () => {
    const h = daemonHost
    const pods = Array.from({ length: 20 }, () => freshNetns())
    const before = observe(h.name)
    const adds = await Promise.all(pods.map((p, i) => spawnIn(h, BRIDGE, callEnv("ADD", `res-c${i}`, p.path), JSON.stringify(conf(h))).done))
    expect(adds.map((run) => [run.exitCode, run.stderr.includes(SERVED)])).toEqual(pods.map(() => [0, true]))
    expect(new Set(adds.map((run) => (run.json?.ips as Array<Json>)[0]!.address)).size).toBe(20)
    const dels = await Promise.all(pods.map((p, i) => spawnIn(h, BRIDGE, callEnv("DEL", `res-c${i}`, p.path), JSON.stringify(conf(h))).done))
    expect(dels.map((run) => run.exitCode)).toEqual(pods.map(() => 0))
    expect(observe(h.name)).toEqual(before)
    pods.forEach((p) => p.remove())
  }, 60_000)

  test("the daemon killed during an ADD: the caller answers code 11 (try again later), and a DEL without a daemon cleans up", async () => {
    const h = host()
    const p = freshNetns()
    const socket = join(scratch, "doomed.sock")
    const doomed = await startDaemon(h, socket)
    settle(h.name)
    const before = observe(h.name)
    const lock = await holdStoreLock(h)
    const caller = spawnIn(h, BRIDGE, callEnv("ADD", "res-6", p.path, socket), JSON.stringify(conf(h)))
    await waitFor("the ADD's veth", () => vethsOn(h) > 0)
    doomed.proc.kill("SIGKILL")
    await doomed.done
    const answered = await caller.done
    await lock.release()
    expect({ exit: answered.exitCode, error: answered.json }).toEqual({
      exit: 1,
      error: { cniVersion: "1.0.0", code: 11, msg: "the tscni daemon ended before answering this ADD" }
    })
    // its socket file is left behind, with nobody listening: the DEL runs in the process
    const del = execIn(h, BRIDGE, callEnv("DEL", "res-6", p.path, socket), JSON.stringify(conf(h)))
    expect([del.exitCode, del.stderr.includes(SERVED)]).toEqual([0, false])
    expect(observe(h.name)).toEqual(before)
    p.remove()
  }, 60_000)

  test("a call of 300 KB with non-ASCII text (several reads on the socket) is served, as in a process", () => {
    const h = daemonHost
    const big = { ...conf(h), "x-note": "é".repeat(150_000) }
    for (const [socket, served] of [[SOCKET, true], [join(scratch, "none.sock"), false]] as const) {
      const p = freshNetns()
      const add = execIn(h, BRIDGE, callEnv("ADD", "res-big", p.path, socket), JSON.stringify(big))
      expect({ socket, exit: add.exitCode, served: add.stderr.includes(SERVED), ips: (add.json?.ips as Array<Json> | undefined)?.length }).toEqual({
        socket,
        exit: 0,
        served,
        ips: 1
      })
      expect(execIn(h, BRIDGE, callEnv("DEL", "res-big", p.path, socket), JSON.stringify(big)).exitCode).toBe(0)
      p.remove()
    }
  })

  test("files a served ADD creates (host-local's store) get the same modes as in a process", () => {
    const h = daemonHost
    const modes: Array<string> = []
    for (const socket of [SOCKET, join(scratch, "none.sock")]) {
      const p = freshNetns()
      const dataDir = join(scratch, `modes-${modes.length}`)
      const c = { ...conf(h), ipam: { ...conf(h).ipam, dataDir } }
      const add = execIn(h, BRIDGE, callEnv("ADD", "res-mode", p.path, socket), JSON.stringify(c))
      expect([add.exitCode, add.stderr.includes(SERVED)]).toEqual([0, socket === SOCKET])
      modes.push(Bun.spawnSync(["stat", "-c", "%a", dataDir, join(dataDir, "resnet")]).stdout.toString().trim())
      expect(execIn(h, BRIDGE, callEnv("DEL", "res-mode", p.path, socket), JSON.stringify(c)).exitCode).toBe(0)
      p.remove()
    }
    expect(modes[0]).toBe(modes[1]!)
  })

  test("a daemon that accepts but never answers: after a wait the caller runs the call itself", async () => {
    const h = daemonHost
    const hung = join(scratch, "hung.sock")
    // says when it listens, and when it has accepted a connection (which it never answers)
    const listener = Bun.spawn(["python3", "-c", `import socket, time
s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(hung)}); s.listen(8)
print("listening", flush=True)
c, _ = s.accept()
print("accepted", flush=True)
time.sleep(60)`], { stdout: "pipe", stderr: "inherit" })
    const reader = listener.stdout.getReader()
    let said = ""
    /** Reads the listener's output until it says `line` (with a deadline: it may never). */
    const heard = async (line: string): Promise<boolean> => {
      const deadline = setTimeout(() => void reader.cancel(), 20_000)
      try {
        while (!said.split("\n").includes(line)) {
          const chunk = await reader.read()
          if (chunk.done) return false
          said += new TextDecoder().decode(chunk.value)
        }
        return true
      } finally {
        clearTimeout(deadline)
      }
    }
    try {
      const p = freshNetns()
      // listening (not only bound): a caller that connects now is accepted, not refused
      expect(await heard("listening")).toBe(true)
      expect(existsSync(hung)).toBe(true)
      const add = execIn(h, BRIDGE, callEnv("ADD", "res-hung", p.path, hung), JSON.stringify(conf(h)))
      expect({ exit: add.exitCode, served: add.stderr.includes(SERVED), loaded: add.stderr.includes("code loaded") }).toEqual({ exit: 0, served: false, loaded: true })
      // the caller did reach the silent daemon: it ran the call itself after waiting for an
      // answer, not because nobody listened
      expect(await heard("accepted")).toBe(true)
      expect(execIn(h, BRIDGE, callEnv("DEL", "res-hung", p.path, join(scratch, "none.sock")), JSON.stringify(conf(h))).exitCode).toBe(0)
      p.remove()
    } finally {
      listener.kill()
    }
  }, 30_000)

  test("SIGTERM while a call is held: the daemon finishes and answers it, then stops and removes its socket", async () => {
    const h = host()
    const p = freshNetns()
    const socket = join(scratch, "stopping.sock")
    const stopping = await startDaemon(h, socket)
    const lock = await holdStoreLock(h)
    const caller = spawnIn(h, BRIDGE, callEnv("ADD", "res-7", p.path, socket), JSON.stringify(conf(h)))
    await waitFor("the ADD's veth", () => vethsOn(h) > 0)
    stopping.proc.kill("SIGTERM")
    // the daemon has taken the SIGTERM once it sends new calls back to their callers: a call
    // with a config error (which changes nothing) is served until then, and runs in its caller
    // after (or there is no daemon left to serve it)
    const probe = () => execIn(h, BRIDGE, callEnv("ADD", "res-7-probe", p.path, socket), JSON.stringify({ ...conf(h), mtu: "nine" }))
    try {
      await waitFor("the daemon to stop taking calls", () => !probe().stderr.includes(SERVED), 20_000)
      // stopping, and still there: it holds a call
      expect(existsSync(socket)).toBe(true)
    } finally {
      await lock.release()
    }
    const add = await caller.done
    expect([add.exitCode, add.stderr.includes(SERVED)]).toEqual([0, true])
    const stopped = await stopping.done
    expect([stopped.exitCode, existsSync(socket)]).toEqual([0, false])
    expect(execIn(h, BRIDGE, callEnv("DEL", "res-7", p.path, socket), JSON.stringify(conf(h))).exitCode).toBe(0)
    p.remove()
  }, 60_000)

  test("SIGTERM with idle connections (one silent, one mid-line): the daemon still stops and removes its socket", async () => {
    const h = host()
    const socket = join(scratch, "idle.sock")
    const stopping = await startDaemon(h, socket)
    const silent = await Bun.connect({ unix: socket, socket: { data: () => {} } })
    const halfLine = await Bun.connect({ unix: socket, socket: { data: () => {} } })
    halfLine.write('{"build":"')
    // the daemon has accepted both and read the half line: two connected sockets on its path
    // are in the daemon's hands (ss -xp names their owner; before accept() they have none),
    // with nothing left unread. They live in this process's namespace, where it connected.
    const daemonSide = () =>
      Bun.spawnSync(["ss", "-xpn"]).stdout.toString().split("\n")
        .map((line) => line.trim().split(/\s+/))
        .filter((fields) => fields[1] === "ESTAB" && fields[4] === socket && fields.join(" ").includes(`pid=${stopping.proc.pid},`))
    try {
      await waitFor("the daemon to take both connections and read the half line", () => {
        const sockets = daemonSide()
        return sockets.length === 2 && sockets.every((fields) => fields[2] === "0")
      }, 20_000)
    } finally {
      stopping.proc.kill("SIGTERM")
    }
    const stopped = await stopping.done
    expect([stopped.exitCode, existsSync(socket)]).toEqual([0, false])
    silent.end()
    halfLine.end()
  }, 30_000)

  test("a second daemon on the same socket refuses to start; SIGTERM stops a daemon and removes its socket", async () => {
    const second = execIn(daemonHost, [join(binDir, "tscni"), "daemon", "--socket", SOCKET, "--health-listen", "off"], {}, "")
    expect(second.exitCode).toBe(1)
    expect(second.stderr).toContain("another daemon is listening")
    expect(existsSync(SOCKET)).toBe(true)
    const own = join(scratch, "own.sock")
    const third = await startDaemon(daemonHost, own)
    third.proc.kill("SIGTERM")
    const stopped = await third.done
    expect([stopped.exitCode, existsSync(own)]).toEqual([0, false])
  })
})
