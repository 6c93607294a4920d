import { describe, expect, test } from "bun:test"
import { Layer } from "effect"
import { staticPlugin } from "../src/index.ts"
import { addressesOf, cniEnv, invoke } from "./helpers.ts"

const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}, cniVersion = "1.0.0") => ({
  cniVersion,
  name: "net",
  type: "static",
  ipam: { type: "static", ...ipam },
  ...extra
})

const call = (command: string, config: unknown, extra: Record<string, string> = {}) =>
  invoke(staticPlugin, Layer.empty, cniEnv(command, extra), config)

const addresses = {
  addresses: [{ address: "10.10.0.5/24", gateway: "10.10.0.1" }, { address: "fd00::5/64" }],
  routes: [{ dst: "0.0.0.0/0" }, { dst: "192.168.0.0/16", gw: "10.10.0.254" }],
  dns: { nameservers: ["10.10.0.53"], domain: "example.org", search: ["example.org"] }
}

describe("static ADD", () => {
  test("returns the configured addresses (host bits kept), routes and dns", async () => {
    const add = await call("ADD", conf(addresses))
    expect(add.json).toEqual({
      cniVersion: "1.0.0",
      ips: [{ address: "10.10.0.5/24", gateway: "10.10.0.1" }, { address: "fd00::5/64" }],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "192.168.0.0/16", gw: "10.10.0.254" }],
      dns: { nameservers: ["10.10.0.53"], domain: "example.org", search: ["example.org"] }
    })
  })

  test("0.3.1 results carry ips[].version", async () => {
    const add = await call("ADD", conf(addresses, {}, "0.3.1"))
    expect((add.json?.ips as Array<Record<string, unknown>>).map((ip) => ip.version)).toEqual(["4", "6"])
  })

  test("CNI_ARGS IP appends, GATEWAY sets the gateway of the addresses whose network holds it", async () => {
    const add = await call("ADD", conf({ addresses: [{ address: "10.10.0.5/24" }] }), {
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.20.0.5/16,fd00::9/64;GATEWAY=10.20.0.1,fd00::1"
    })
    expect(add.json?.ips).toEqual([
      { address: "10.10.0.5/24" },
      { address: "10.20.0.5/16", gateway: "10.20.0.1" },
      { address: "fd00::9/64", gateway: "fd00::1" }
    ])
  })

  test("args.cni.ips and then runtimeConfig.ips replace the configured addresses", async () => {
    const fromArgs = await call("ADD", conf(addresses, { args: { cni: { ips: ["10.30.0.5/24"] } } }))
    expect(addressesOf(fromArgs.json)).toEqual(["10.30.0.5/24"])
    const fromRuntime = await call("ADD", conf(addresses, {
      args: { cni: { ips: ["10.30.0.5/24"] } },
      runtimeConfig: { ips: ["10.40.0.5/24", "fd00::40/64"] }
    }))
    expect(addressesOf(fromRuntime.json)).toEqual(["10.40.0.5/24", "fd00::40/64"])
  })

  const errors: Array<[string, unknown, Record<string, string>, number, string]> = [
    ["address not a CIDR", conf({ addresses: [{ address: "10.0.0.5" }] }), {}, 7, `ipam.addresses[0].address: expected an address in CIDR notation, got "10.0.0.5"`],
    ["address missing", conf({ addresses: [{ gateway: "10.0.0.1" }] }), {}, 7, "ipam.addresses[0].address: missing"],
    ["gateway not an IP", conf({ addresses: [{ address: "10.0.0.5/24", gateway: "x" }] }), {}, 7, `ipam.addresses[0].gateway: not an IP address: "x"`],
    ["gateway family", conf({ addresses: [{ address: "10.0.0.5/24", gateway: "fd00::1" }] }), {}, 7, "ipam.addresses[0].gateway: fd00::1 is not of the same family as 10.0.0.5/24"],
    ["bad route", conf({ routes: [{ dst: "nope" }] }), {}, 7, `ipam.routes[0].dst: not a CIDR: "nope"`],
    ["bad dns", conf({ dns: { nameservers: "10.0.0.53" } }), {}, 7, "ipam.dns.nameservers: "],
    ["runtimeConfig.ips entry", conf({}, { runtimeConfig: { ips: ["10.0.0.5"] } }), {}, 7, `runtimeConfig.ips[0]: expected an address in CIDR notation`],
    ["args.cni.ips entry", conf({}, { args: { cni: { ips: [5] } } }), {}, 7, "args.cni.ips[0]: expected a string"],
    ["CNI_ARGS IP", conf({}), { CNI_ARGS: "IP=10.0.0.5" }, 4, `CNI_ARGS: IP: expected an address in CIDR notation`],
    ["CNI_ARGS GATEWAY", conf({}), { CNI_ARGS: "IP=10.0.0.5/24;GATEWAY=gw" }, 4, `CNI_ARGS: GATEWAY: not an IP address: "gw"`],
    ["CNI_ARGS unknown key", conf({}), { CNI_ARGS: "MAC=aa:bb" }, 4, "CNI_ARGS: unknown args MAC=aa:bb"],
    ["no ipam", { cniVersion: "1.0.0", name: "net", type: "static" }, {}, 7, "ipam: missing"]
  ]
  for (const [label, config, env, code, message] of errors) {
    test(`error: ${label}`, async () => {
      const out = await call("ADD", config, env)
      expect([out.exitCode, out.json?.code, String(out.json?.msg).slice(0, message.length)]).toEqual([1, code, message])
    })
  }
})

describe("static CHECK, DEL, GC, STATUS", () => {
  test("CHECK passes with the ADD result and fails when an address or gateway differs", async () => {
    const add = await call("ADD", conf(addresses))
    expect((await call("CHECK", conf(addresses, { prevResult: add.json }))).exitCode).toBe(0)
    const missing = await call("CHECK", conf(addresses, {
      prevResult: { ...add.json, ips: [{ address: "10.10.0.5/24", gateway: "10.10.0.1" }] }
    }))
    expect([missing.json?.code, missing.json?.msg]).toEqual([
      100,
      "static CHECK: fd00::5/64 (ipam.addresses[1]) is missing from prevResult"
    ])
    const wrongGateway = await call("CHECK", conf(addresses, {
      prevResult: { ...add.json, ips: [{ address: "10.10.0.5/24", gateway: "10.10.0.2" }, { address: "fd00::5/64" }] }
    }))
    expect(wrongGateway.json?.msg).toBe("static CHECK: 10.10.0.5/24 has gateway 10.10.0.2 in prevResult, expected 10.10.0.1")
  })

  test("DEL, GC and STATUS succeed with no output", async () => {
    for (const command of ["DEL", "GC", "STATUS"]) {
      const out = await call(command, conf(addresses, {}, "1.1.0"))
      expect([command, out.exitCode, out.stdout]).toEqual([command, 0, ""])
    }
  })
})
