import { describe, expect, test } from "bun:test"
import { parseArgs } from "../src/cli.ts"

const parse = (argv: ReadonlyArray<string>, env: Record<string, string> = {}) => parseArgs(argv, env, "/img/bin")

describe("parseArgs", () => {
  test("defaults", () => {
    expect(parse([])).toEqual({
      kind: "install",
      options: {
        source: "/img/bin",
        binDir: "/opt/cni/bin",
        confDir: "/etc/cni/net.d",
        mode: "multicall",
        plugins: undefined,
        conflist: { kind: "none" },
        dryRun: false
      }
    })
  })

  test("every option, in both spellings", () => {
    const command = parse([
      "--source=/s",
      "--bin-dir",
      "/b",
      "--conf-dir=/c",
      "--mode",
      "plugins",
      "--plugins",
      "bridge, portmap,",
      "--conflist-template",
      "/t/10-x.conflist.template",
      "--pod-cidr",
      "10.1.0.0/16",
      "--dry-run"
    ])
    expect(command).toEqual({
      kind: "install",
      options: {
        source: "/s",
        binDir: "/b",
        confDir: "/c",
        mode: "plugins",
        plugins: ["bridge", "portmap"],
        conflist: { kind: "template", path: "/t/10-x.conflist.template", podCidr: "10.1.0.0/16" },
        dryRun: true
      }
    })
  })

  test("POD_CIDR from the environment", () => {
    const command = parse(["--conflist-template", "/t"], { POD_CIDR: "10.2.0.0/16" })
    expect(command.kind === "install" && command.options.conflist).toEqual({ kind: "template", path: "/t", podCidr: "10.2.0.0/16" })
  })

  test("relative paths become absolute", () => {
    const command = parse(["--bin-dir", "rel/bin"])
    expect(command.kind === "install" && command.options.binDir).toBe(`${process.cwd()}/rel/bin`)
  })

  test("--uninstall", () => {
    expect(parse(["--uninstall", "--bin-dir", "/b", "--dry-run"])).toEqual({ kind: "uninstall", binDir: "/b", dryRun: true })
  })

  test("--help wins", () => {
    expect(parse(["--mode", "x", "-h"])).toEqual({ kind: "help" })
    expect(parse(["--dry-run", "--help"])).toEqual({ kind: "help" })
  })

  test.each([
    [["--mode", "static"], /--mode must be multicall or plugins/],
    [["--conflist", "/a", "--no-conflist"], /only one of/],
    [["--conflist", "/a", "--conflist-template", "/b"], /only one of/],
    [["--pod-cidr", "10.0.0.0/8"], /--pod-cidr is for --conflist-template/],
    [["--plugins", ","], /names no plugin/],
    [["--uninstall", "--mode", "plugins"], /--uninstall takes only/],
    [["--frobnicate"], /unknown option --frobnicate/],
    [["stray"], /unexpected argument stray/],
    [["--dry-run=yes"], /takes no value/],
    [["--source"], /--source needs a value/],
    [["--source", "/a", "--source", "/b"], /given twice/]
  ])("%j is a usage error", (argv, message) => {
    const command = parse(argv)
    expect(command.kind).toBe("usage")
    expect(command.kind === "usage" && command.message).toMatch(message)
  })
})
