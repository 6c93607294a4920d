import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Fiber, Option } from "effect"
import { CallerEnvironment, CniError } from "@tscni/spec"
import { ipamAllocate, PluginExec } from "../src/index.ts"

const RESULT = { cniVersion: "1.0.0", ips: [{ address: "10.99.0.5/24", gateway: "10.99.0.1" }] }

let dir = ""
let log = ""

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tscni-steps-"))
  log = join(dir, "calls.log")
  // Records verb, CNI vars and stdin, then answers like an IPAM plugin.
  await writeFile(join(dir, "okipam"), [
    "#!/bin/sh",
    `stdin=$(cat)`,
    `printf '%s %s %s %s %s %s|%s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$stdin" >> '${log}'`,
    `if [ "$CNI_COMMAND" = ADD ]; then printf '%s' '${JSON.stringify(RESULT)}'; fi`,
    "exit 0"
  ].join("\n"))
  await writeFile(join(dir, "badipam"), [
    "#!/bin/sh",
    "cat >/dev/null",
    `printf '%s' '{"cniVersion":"1.0.0","code":11,"msg":"range exhausted","details":"10.99.0.0/30"}'`,
    "exit 1"
  ].join("\n"))
  await writeFile(join(dir, "notexec"), "#!/bin/sh\nexit 0\n")
  // Prints what it inherited, and the request's CNI_COMMAND.
  await writeFile(join(dir, "envipam"), '#!/bin/sh\ncat >/dev/null\nprintf "%s|%s|%s" "$FROM_CALLER" "$CNI_COMMAND" "$CNI_STALE"\n')
  // Writes its pid and waits: to see it killed when its caller is interrupted.
  await writeFile(join(dir, "slowipam"), `#!/bin/sh\necho $$ > '${join(dir, "slow.pid")}'\nexec sleep 30\n`)
  await chmod(join(dir, "envipam"), 0o755)
  await chmod(join(dir, "slowipam"), 0o755)
  await chmod(join(dir, "okipam"), 0o755)
  await chmod(join(dir, "badipam"), 0o755)
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const run = <A, E>(effect: Effect.Effect<A, E, PluginExec>) => Effect.runPromiseExit(Effect.provide(effect, PluginExec.layer))

const input = (pluginType: string) => ({
  pluginType,
  config: { cniVersion: "1.0.0", name: "net1", type: "bridge", ipam: { type: pluginType } },
  cniVersion: "1.0.0",
  containerId: "ctr1",
  netns: "/var/run/netns/ctr1",
  ifname: "eth0",
  args: "IgnoreUnknown=1",
  cniPath: `/nonexistent:${dir}`
})

describe("PluginExec.layer (real processes)", () => {
  test("the child inherits the caller's environment (CallerEnvironment), with the request's CNI_ variables replacing inherited ones", async () => {
    const exit = await run(Effect.gen(function*() {
      const exec = yield* PluginExec
      return yield* exec.exec({ path: join(dir, "envipam"), command: "ADD", env: { CNI_COMMAND: "ADD" }, stdin: "{}" })
    }).pipe(Effect.provideService(CallerEnvironment, { FROM_CALLER: "yes", CNI_COMMAND: "DEL", CNI_STALE: "old" })))
    expect(Exit.isSuccess(exit) && exit.value).toEqual({ exitCode: 0, stdout: "yes|ADD|", stderr: "" })
  })

  test("interrupting an exec kills the child", async () => {
    const pidFile = join(dir, "slow.pid")
    const fiber = Effect.runFork(Effect.provide(
      Effect.gen(function*() {
        const exec = yield* PluginExec
        return yield* exec.exec({ path: join(dir, "slowipam"), command: "ADD", env: {}, stdin: "{}" })
      }),
      PluginExec.layer
    ))
    let pid = 0
    for (let waited = 0; pid === 0 && waited < 5000; waited += 20) {
      await Bun.sleep(20)
      pid = Number((await Bun.file(pidFile).text().catch(() => "0")).trim())
    }
    expect(pid).toBeGreaterThan(0)
    await Effect.runPromise(Fiber.interrupt(fiber))
    const alive = () => {
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }
    for (let waited = 0; alive() && waited < 5000; waited += 20) await Bun.sleep(20)
    expect(alive()).toBe(false)
  })

  test("find searches CNI_PATH in order and skips non-executables", async () => {
    const exit = await run(Effect.gen(function*() {
      const exec = yield* PluginExec
      return {
        ok: yield* exec.find("okipam", `/nonexistent::${dir}`),
        notExec: yield* exec.lookup("notexec", dir),
        missing: yield* Effect.flip(exec.find("nope", dir)),
        traversal: yield* Effect.flip(exec.find("../okipam", dir))
      }
    }))
    expect(Exit.isSuccess(exit)).toBe(true)
    if (!Exit.isSuccess(exit)) return
    expect(exit.value.ok).toBe(join(dir, "okipam"))
    expect(Option.isNone(exit.value.notExec)).toBe(true)
    expect(exit.value.missing.code).toBe(5)
    expect(exit.value.traversal.code).toBe(7)
  })

  test("ipamAllocate ADD/CHECK/DEL through a shell-script plugin", async () => {
    const exit = await run(Effect.gen(function*() {
      const handle = yield* ipamAllocate.apply(input("okipam"))
      yield* ipamAllocate.check(handle)
      yield* ipamAllocate.undo(handle)
      return handle
    }))
    expect(Exit.isSuccess(exit)).toBe(true)
    if (!Exit.isSuccess(exit)) return
    expect(exit.value.result).toEqual({ cniVersion: "1.0.0", ips: [{ address: "10.99.0.5/24", gateway: "10.99.0.1" }] })
    const lines = (await Bun.file(log).text()).trim().split("\n")
    expect(lines.map((line) => line.split("|")[0])).toEqual([
      `ADD ctr1 /var/run/netns/ctr1 eth0 IgnoreUnknown=1 /nonexistent:${dir}`,
      `CHECK ctr1 /var/run/netns/ctr1 eth0 IgnoreUnknown=1 /nonexistent:${dir}`,
      `DEL ctr1 /var/run/netns/ctr1 eth0 IgnoreUnknown=1 /nonexistent:${dir}`
    ])
    const stdins = lines.map((line) => JSON.parse(line.slice(line.indexOf("|") + 1)))
    expect(stdins[0]).toEqual(input("okipam").config)
    expect(stdins[1].prevResult).toEqual(RESULT)
    expect(stdins[2]).toEqual(input("okipam").config)
  })

  test("an error JSON with exit 1 becomes the plugin's CniError", async () => {
    const exit = await run(ipamAllocate.apply(input("badipam")))
    expect(Exit.isFailure(exit)).toBe(true)
    if (!Exit.isFailure(exit)) return
    const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    expect(error?._tag === "Fail" && error.error).toEqual(
      new CniError({ code: 11, msg: "range exhausted", details: "10.99.0.0/30" })
    )
  })
})
