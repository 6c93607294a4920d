import { describe, expect, test } from "bun:test"
import { Exit, Schema } from "effect"
import {
  CniError,
  ErrorCode,
  decodeFailure,
  describeSchemaError,
  errorResult,
  incompatibleVersion,
  internalError,
  invalidConfig,
  invalidEnvironment,
  ioFailure,
  notAvailable,
  tryAgainLater,
  unknownContainer,
  unsupportedField
} from "../src/index.ts"

describe("error constructors", () => {
  test("codes match the spec", () => {
    expect(ErrorCode).toEqual({
      IncompatibleVersion: 1,
      UnsupportedField: 2,
      UnknownContainer: 3,
      InvalidEnvironment: 4,
      IoFailure: 5,
      DecodeFailure: 6,
      InvalidConfig: 7,
      TryAgainLater: 11,
      NotAvailable: 50,
      NotAvailableDamaged: 51,
      Internal: 100
    })
  })

  test("incompatibleVersion names the version and the supported list", () => {
    const e = incompatibleVersion("0.2.0")
    expect(e).toBeInstanceOf(CniError)
    expect(e._tag).toBe("CniError")
    expect(e.code).toBe(1)
    expect(e.msg).toContain('"0.2.0"')
    expect(e.msg).toContain("1.1.0")
    expect(incompatibleVersion("9.0.0", ["0.4.0"]).msg).toContain("[0.4.0]")
  })

  test("unsupportedField names key and value", () => {
    const e = unsupportedField("ipam.type", "dhcp")
    expect(e.code).toBe(2)
    expect(e.msg).toBe('ipam.type: unsupported value "dhcp"')
    expect(unsupportedField("mtu", 70000).msg).toBe("mtu: unsupported value 70000")
    expect(unsupportedField("x", { a: 1 }).msg).toBe('x: unsupported value {"a":1}')
  })

  test("invalidEnvironment names the variable", () => {
    const e = invalidEnvironment("CNI_IFNAME", "missing")
    expect(e.code).toBe(4)
    expect(e.msg).toBe("CNI_IFNAME: missing")
  })

  test("invalidConfig names the field path", () => {
    const e = invalidConfig("ipam.ranges[0][0].subnet", "not a CIDR")
    expect(e.code).toBe(7)
    expect(e.msg).toBe("ipam.ranges[0][0].subnet: not a CIDR")
    expect(invalidConfig("", "empty").msg).toBe("empty")
  })

  test("the rest carry their codes, messages and details", () => {
    expect([unknownContainer("gone").code, unknownContainer("gone").msg]).toEqual([3, "gone"])
    const io = ioFailure("read stdin", "EPIPE")
    expect([io.code, io.msg, io.details]).toEqual([5, "read stdin", "EPIPE"])
    expect("details" in ioFailure("x")).toBe(false)
    const dec = decodeFailure("bad json", "pos 3")
    expect([dec.code, dec.msg, dec.details]).toEqual([6, "bad json", "pos 3"])
    expect([tryAgainLater("busy").code, tryAgainLater("busy").msg]).toEqual([11, "busy"])
    expect(notAvailable("no bridge").code).toBe(50)
    expect(notAvailable("no bridge", true).code).toBe(51)
    expect(notAvailable("no bridge", false).msg).toBe("no bridge")
    const int = internalError("boom", "stack")
    expect([int.code, int.msg, int.details]).toEqual([100, "boom", "stack"])
  })

  test("errorResult is the stdout error JSON, without a details key when absent", () => {
    expect(errorResult(invalidEnvironment("CNI_NETNS", "missing"), "1.0.0")).toEqual({
      cniVersion: "1.0.0",
      code: 4,
      msg: "CNI_NETNS: missing"
    })
    expect(Object.keys(errorResult(tryAgainLater("x"), "1.1.0"))).toEqual(["cniVersion", "code", "msg"])
    expect(errorResult(ioFailure("read", "EIO"), "0.4.0")).toEqual({
      cniVersion: "0.4.0",
      code: 5,
      msg: "read",
      details: "EIO"
    })
    expect(JSON.parse(JSON.stringify(errorResult(ioFailure("read", "EIO"), "0.4.0")))).toEqual({
      cniVersion: "0.4.0",
      code: 5,
      msg: "read",
      details: "EIO"
    })
  })
})

describe("describeSchemaError", () => {
  const Range = Schema.Struct({ subnet: Schema.String })
  const Conf = Schema.Struct({
    ipam: Schema.Struct({ ranges: Schema.Array(Schema.Array(Range)) }),
    "cni.dev/x": Schema.optionalKey(Schema.Number)
  })
  const failure = (input: unknown): unknown => {
    const exit = Schema.decodeUnknownExit(Conf)(input)
    if (Exit.isSuccess(exit)) throw new Error("expected failure")
    return exit.cause.reasons[0]?._tag === "Fail" ? exit.cause.reasons[0].error : undefined
  }

  test("nested bad field yields the dotted path", () => {
    const d = describeSchemaError(failure({ ipam: { ranges: [[{ subnet: "a" }], [{ subnet: "b" }, { subnet: 5 }]] } }))
    expect(d.path).toBe("ipam.ranges[1][1].subnet")
    expect(d.message).toContain("string")
  })

  test("missing keys and odd key names", () => {
    expect(describeSchemaError(failure({ ipam: { ranges: [[{}]] } }))).toEqual({
      path: "ipam.ranges[0][0].subnet",
      message: "missing"
    })
    expect(describeSchemaError(failure({ ipam: { ranges: [] }, "cni.dev/x": "s" })).path).toBe('["cni.dev/x"]')
  })

  test("root failures have an empty path; the SchemaError's issue works too", () => {
    const e = failure(42)
    expect(describeSchemaError(e).path).toBe("")
    expect(Schema.isSchemaError(e)).toBe(true)
    if (Schema.isSchemaError(e)) expect(describeSchemaError(e.issue).path).toBe("")
  })

  test("non-schema errors fall back to their message", () => {
    expect(describeSchemaError(new Error("plain"))).toEqual({ path: "", message: "plain" })
    expect(describeSchemaError("text")).toEqual({ path: "", message: "text" })
  })
})
