import { afterEach, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Cause, Effect, Exit } from "effect"
import {
  pluginTypes,
  renderedName,
  renderTemplate,
  requireConflistName,
  validateConflist,
  validatePodCidr
} from "../src/conflist.ts"
import { cleanup, cli, fakeMulticall, put, snapshot, TEMPLATE, tempDir } from "./helpers.ts"

const ok = <A, E>(effect: Effect.Effect<A, E>): A => Effect.runSync(effect)
const failure = <A, E extends { readonly message: string }>(effect: Effect.Effect<A, E>): string => {
  const exit = Effect.runSyncExit(effect)
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got ${JSON.stringify(exit.value)}`)
  return exit.cause.reasons.find(Cause.isFailReason)?.error.message ?? ""
}

describe("validatePodCidr", () => {
  test.each([
    ["10.244.1.0/24", "10.244.1.0/24"],
    [" 10.244.1.0/24\n", "10.244.1.0/24"],
    ["fd00:10:244:1::/64", "fd00:10:244:1::/64"],
    ["FD00:10:244:1:0:0:0:0/64", "fd00:10:244:1::/64"]
  ])("%j is %s", (input, canonical) => {
    expect(ok(validatePodCidr(input))).toBe(canonical)
  })

  test.each([
    ["10.244.1.0", /not a CIDR/],
    ["10.244.1.0/33", /not a CIDR/],
    ["banana", /not a CIDR/],
    ["", /not a CIDR/],
    ["10.244.1.5/24", /host bits set; did you mean 10\.244\.1\.0\/24\?/],
    ["10.244.1.0/24\"}]]", /not a CIDR/]
  ])("%j is refused", (input, message) => {
    expect(failure(validatePodCidr(input))).toMatch(message)
  })
})

describe("renderTemplate", () => {
  test("fills every placeholder", () => {
    expect(ok(renderTemplate(`{"a":"__POD_CIDR__","b":["__POD_CIDR__"]}`, "10.0.0.0/16"))).toBe(
      `{"a":"10.0.0.0/16","b":["10.0.0.0/16"]}`
    )
  })

  test("a template without the placeholder is refused", () => {
    expect(failure(renderTemplate(`{"a":1}`, "10.0.0.0/16"))).toMatch(/no __POD_CIDR__ placeholder/)
  })

  test("a placeholder it does not fill is refused", () => {
    expect(failure(renderTemplate(`{"a":"__POD_CIDR__","b":"__CLUSTER_DNS__"}`, "10.0.0.0/16"))).toMatch(/__CLUSTER_DNS__/)
  })
})

describe("validateConflist", () => {
  test.each([
    ["{", /not valid JSON/],
    [`{"cniVersion":"1.0.0","name":"x","plugins":[]}`, /not a valid conflist/],
    [`{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}`, /not a valid conflist.*name/],
    [`{"cniVersion":"1.0.0","name":"x","plugins":[{"ipam":{}}]}`, /not a valid conflist/],
    [`{"cniVersion":"9.9.9","name":"x","plugins":[{"type":"bridge"}]}`, /cniVersion 9\.9\.9 is not one of/]
  ])("%s is refused", (text, message) => {
    expect(failure(validateConflist(text, "x.conflist"))).toMatch(message)
  })

  test("pluginTypes lists each type and ipam type once", () => {
    const list = ok(validateConflist(
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "x",
        plugins: [{ type: "bridge", ipam: { type: "host-local" } }, { type: "portmap" }, { type: "bridge" }]
      }),
      "x"
    ))
    expect(pluginTypes(list)).toEqual(["bridge", "host-local", "portmap"])
  })
})

describe("the deploy template", () => {
  test("renders into a valid bridge + host-local + portmap + bandwidth + tuning chain", () => {
    const rendered = ok(renderTemplate(readFileSync(TEMPLATE, "utf8"), "10.244.7.0/24", TEMPLATE))
    const list = ok(validateConflist(rendered, TEMPLATE))
    expect(list.cniVersion).toBe("1.0.0")
    expect(pluginTypes(list)).toEqual(["bridge", "host-local", "portmap", "bandwidth", "tuning"])
    const json = JSON.parse(rendered)
    expect(json.plugins[0].ipam.ranges).toEqual([[{ subnet: "10.244.7.0/24" }]])
    expect(rendered).not.toContain("__")
    expect(renderedName(TEMPLATE)).toBe("10-tscni.conflist")
  })

  test("names", () => {
    expect(ok(requireConflistName("10-tscni.conflist", "f"))).toBe("10-tscni.conflist")
    expect(failure(requireConflistName("10-tscni.conf", "f"))).toMatch(/must end in \.conflist/)
    expect(renderedName("/x/y/a.conflist")).toBe("a.conflist")
  })
})

describe("tscni-install --conflist-template", () => {
  const roots: Array<string> = []
  afterEach(() => cleanup(...roots.splice(0)))

  const setup = (plugins = ["bridge", "host-local", "portmap", "bandwidth", "tuning"]) => {
    const root = tempDir()
    roots.push(root)
    const source = join(root, "dist")
    mkdirSync(source)
    fakeMulticall(join(source, "tscni"), plugins)
    const host = join(root, "host")
    const bin = join(host, "bin")
    const conf = join(host, "net.d")
    put(join(conf, "99-keep.conflist"), "{}\n")
    return { host, bin, conf, args: ["--source", source, "--bin-dir", bin, "--conf-dir", conf, "--conflist-template", TEMPLATE] }
  }

  test("renders with POD_CIDR from the environment and installs 10-tscni.conflist", () => {
    const s = setup()
    const run = cli(s.args, { POD_CIDR: "10.244.3.0/24" })
    expect(run.stderr).toBe("")
    expect(run.exitCode).toBe(0)
    const installed = JSON.parse(readFileSync(join(s.conf, "10-tscni.conflist"), "utf8"))
    expect(installed.plugins[0].ipam.ranges[0][0].subnet).toBe("10.244.3.0/24")
    expect(existsSync(join(s.conf, "10-tscni.conflist.template"))).toBe(false)
  })

  test("--pod-cidr wins over POD_CIDR", () => {
    const s = setup()
    expect(cli([...s.args, "--pod-cidr", "10.9.0.0/16"], { POD_CIDR: "10.244.3.0/24" }).exitCode).toBe(0)
    expect(readFileSync(join(s.conf, "10-tscni.conflist"), "utf8")).toContain(`"10.9.0.0/16"`)
  })

  test.each([
    [{}, [] as Array<string>, /needs the pod CIDR/],
    [{ POD_CIDR: "10.244.3.9/24" }, [], /host bits set/],
    [{}, ["--pod-cidr", "not-a-cidr"], /not a CIDR/]
  ])("a missing or bad pod CIDR is refused before anything changes (%j %j)", (env, extra, message) => {
    const s = setup()
    const before = snapshot(s.host)
    const run = cli([...s.args, ...extra], env)
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(message)
    expect(snapshot(s.host)).toEqual(before)
  })

  test("a conflist naming plugins that would not be there is refused", () => {
    const s = setup(["bridge", "host-local", "portmap"])
    const before = snapshot(s.host)
    const run = cli(s.args, { POD_CIDR: "10.244.3.0/24" })
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(/uses bandwidth, tuning, which would be neither installed nor found in/)
    expect(snapshot(s.host)).toEqual(before)
  })

  test("an invalid conflist file is refused", () => {
    const s = setup()
    const bad = join(s.host, "..", "bad.conflist")
    writeFileSync(bad, `{"cniVersion":"1.0.0","name":"x","plugins":"bridge"}`)
    const run = cli([...s.args.slice(0, 6), "--conflist", bad])
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(/bad\.conflist is not a valid conflist/)
  })
})
