import { describe, expect, test } from "bun:test"
import { CniError } from "@tscni/spec"
import { PluginFailed } from "../src/errors.ts"
import { errorJson, formatError, formatResult, table } from "../src/output.ts"

describe("output", () => {
  test("a result as tables: interfaces, IPs with their interface's name, routes, DNS", () => {
    const text = formatResult({
      cniVersion: "1.0.0",
      interfaces: [{ name: "cni0", mac: "aa:aa:aa:aa:aa:01" }, { name: "eth0", mac: "aa:aa:aa:aa:aa:02", sandbox: "/var/run/netns/p" }],
      ips: [{ address: "10.1.0.2/24", gateway: "10.1.0.1", interface: 1 }, { address: "fd00::2/64" }],
      routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }],
      dns: { nameservers: ["10.1.0.1"] }
    })
    expect(text).toBe([
      "INTERFACE  MAC                SANDBOX",
      "cni0       aa:aa:aa:aa:aa:01",
      "eth0       aa:aa:aa:aa:aa:02  /var/run/netns/p",
      "",
      "ADDRESS      GATEWAY   INTERFACE",
      "10.1.0.2/24  10.1.0.1  eth0",
      "fd00::2/64",
      "",
      "ROUTE      VIA",
      "0.0.0.0/0  10.1.0.1",
      "",
      "DNS  10.1.0.1"
    ].join("\n"))
    expect(formatResult({ cniVersion: "1.0.0" })).toBe("(empty result)")
    expect(table(["A", "B"], [["xx", ""]])).toBe("A   B\nxx")
  })

  test("errors: the plugin's CNI error with plugin and verb", () => {
    const failed = new PluginFailed({ plugin: "bridge", verb: "ADD", code: 11, msg: "busy", details: "line 1\nline 2" })
    expect(formatError(failed)).toBe("cni: plugin bridge failed (ADD): [code 11] busy\n  line 1\n  line 2")
    expect(errorJson(failed)).toEqual({ plugin: "bridge", verb: "ADD", code: 11, msg: "busy", details: "line 1\nline 2" })
    expect(formatError(new CniError({ code: 7, msg: "no network" }))).toBe("cni: [code 7] no network")
  })
})
