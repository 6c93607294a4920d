import { describe, expect, test } from "bun:test"
import {
  attrString,
  attrU32,
  AttributeWriter,
  decodeAttributes,
  decodeError,
  decodeMessages,
  encodeMessage,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_ERROR
} from "../src/netlink/message.ts"

describe("netlink encoding", () => {
  test("attributes are padded to 4 bytes and decode back", () => {
    const data = new AttributeWriter().string(3, "eth0").u32(4, 1500).u8(7, 1).nested(18, (inner) => inner.string(1, "veth")).finish()
    expect(data.byteLength % 4).toBe(0)
    const attributes = decodeAttributes(data)
    expect(attrString(attributes, 3)).toBe("eth0")
    expect(attrU32(attributes, 4)).toBe(1500)
    expect(attributes.get(7)?.[0]).toBe(1)
    // nested flag is masked off the type
    expect(attrString(decodeAttributes(attributes.get(18)!), 1)).toBe("veth")
  })

  test("messages split back into header fields and payload", () => {
    const header = new Uint8Array(16).fill(7)
    const one = encodeMessage(16, 0x5, 42, header, new AttributeWriter().u32(4, 9000).finish())
    const two = encodeMessage(3, 0x2, 43, new Uint8Array(4))
    const both = new Uint8Array(one.byteLength + two.byteLength)
    both.set(one)
    both.set(two, one.byteLength)
    const messages = decodeMessages(both)
    expect(messages.map((m) => [m.type, m.flags, m.seq])).toEqual([[16, 0x5, 42], [3, 0x2, 43]])
    expect(attrU32(decodeAttributes(messages[0]!.payload.subarray(16)), 4)).toBe(9000)
  })

  test("an error message carries errno and the extended-ack text", () => {
    const request = encodeMessage(16, 0x5, 9, new Uint8Array(16))
    const tlv = new AttributeWriter().string(1, "Address already assigned").finish()
    const capped = new Uint8Array(4 + 16 + tlv.byteLength)
    const view = new DataView(capped.buffer)
    view.setInt32(0, -17, true)
    capped.set(request.subarray(0, 16), 4)
    capped.set(tlv, 20)
    const message = { type: NLMSG_ERROR, flags: NLM_F_ACK_TLVS | NLM_F_CAPPED, seq: 9, payload: capped }
    expect(decodeError(message)).toEqual({ errno: 17, text: "Address already assigned" })
    // uncapped: the whole request is echoed before the TLVs
    const full = new Uint8Array(4 + request.byteLength + tlv.byteLength)
    new DataView(full.buffer).setInt32(0, -17, true)
    full.set(request, 4)
    full.set(tlv, 4 + request.byteLength)
    expect(decodeError({ ...message, flags: NLM_F_ACK_TLVS, payload: full })).toEqual({ errno: 17, text: "Address already assigned" })
  })
})
