/**
 * A path bound to a new namespace after the old one was deleted by someone else (`ip netns
 * delete` + `ip netns add` under the same name): what a long-lived process (the resident
 * daemon) sees when a runtime reuses a pod's netns path. Observed with ip -j.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { makeLinuxBackend, releaseNamespaceResources } from "../src/index.ts"

if (process.getuid?.() !== 0) throw new Error("these tests need root")

const backend = makeLinuxBackend()
const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)
const name = `tscni-reuse-${process.pid}`
const path = `/var/run/netns/${name}`
const ip = (...args: Array<string>) => Bun.spawnSync(["ip", ...args], { stdout: "pipe", stderr: "pipe" })
afterAll(() => void ip("netns", "delete", name))

/** Is the netns holding a socket of ours? Its /proc/PID/net view lists our netlink sockets by inode. */
const ownNetlinkSocketsIn = (netns: string): number => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "cat", "/proc/net/netlink"], { stdout: "pipe" }).stdout.toString()
  // columns: sk Eth Pid ...: our sockets are bound to this process's pid (port id = pid for the first one)
  return out.split("\n").slice(1).filter((line) => line.trim().split(/\s+/)[2] === String(process.pid)).length
}

describe("namespace paths reused while sockets are cached", () => {
  test("after the path is bound to a new namespace, operations reach the new one, not the old", async () => {
    expect(ip("netns", "add", name).exitCode).toBe(0)
    await run(backend.createLink({ netns: path, name: "old-ifb", kind: "ifb" }))
    expect((await run(backend.listLinks(path))).map((link) => link.name)).toContain("old-ifb")
    // someone else deletes the namespace and makes a new one under the same name
    expect(ip("netns", "delete", name).exitCode).toBe(0)
    expect(ip("netns", "add", name).exitCode).toBe(0)
    expect(ip("-n", name, "link", "add", "new-ifb", "type", "ifb").exitCode).toBe(0)
    const names = (await run(backend.listLinks(path))).map((link) => link.name)
    expect(names).toContain("new-ifb")
    expect(names).not.toContain("old-ifb")
    await run(backend.createLink({ netns: path, name: "ours-ifb", kind: "ifb" }))
    const seen = JSON.parse(ip("-j", "-n", name, "link", "show").stdout.toString()) as Array<{ ifname: string }>
    expect(seen.map((link) => link.ifname).sort()).toEqual(["lo", "new-ifb", "ours-ifb"])
  })

  test("releaseNamespaceResources closes the sockets held in other namespaces", async () => {
    await run(backend.listLinks(path))
    expect(ownNetlinkSocketsIn(name)).toBeGreaterThan(0)
    releaseNamespaceResources()
    expect(ownNetlinkSocketsIn(name)).toBe(0)
    // and the next call opens a fresh one
    expect((await run(backend.listLinks(path))).map((link) => link.name)).toContain("ours-ifb")
  })
})
