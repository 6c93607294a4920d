/**
 * Netlink wire format: a 16-byte header, a fixed family header, then TLV attributes, each
 * padded to 4 bytes. Little-endian (host order on every platform tscni runs on).
 */

/** Size of struct nlmsghdr: where each message's payload starts. */
export const NLMSG_HDRLEN = 16
/** The kernel's reply to an acked request: errno 0 is success, anything else the failure. */
export const NLMSG_ERROR = 2
/** Ends a multipart dump. */
export const NLMSG_DONE = 3

/** Set on every message tscni sends: it is a request to the kernel. */
export const NLM_F_REQUEST = 0x1
/** Asks for an NLMSG_ERROR reply, so a request is known to have succeeded or why it failed. */
export const NLM_F_ACK = 0x4
/**
 * Set by the kernel when the table changed during a dump: the result may be inconsistent,
 * so the dump is restarted.
 */
export const NLM_F_DUMP_INTR = 0x10
/**
 * In an error reply: only the header of the failed request is echoed; decodeError needs
 * this to find the ack attributes after it.
 */
export const NLM_F_CAPPED = 0x100
/** In an error reply: extended-ack attributes (the error text) follow. */
export const NLM_F_ACK_TLVS = 0x200
/** A get request for every object of a kind (ROOT | MATCH). */
export const NLM_F_DUMP = 0x300
/**
 * NEW request modifier: fail with EEXIST rather than touch an object that is already
 * there, so steps never adopt by accident.
 */
export const NLM_F_EXCL = 0x200
/** NEW request modifier: create the object if it does not exist. */
export const NLM_F_CREATE = 0x400
/** NEW request modifier: add a route next to existing ones to the same destination (multipath). */
export const NLM_F_APPEND = 0x800

/** NLMSGERR_ATTR_MSG: the kernel's extended-ack error text */
const NLMSGERR_ATTR_MSG = 1
/** NLMSGERR_ATTR_OFFS: where in the request the attribute the kernel refused starts (u32) */
const NLMSGERR_ATTR_OFFS = 2
const NLA_F_NESTED = 0x8000
const NLA_TYPE_MASK = 0x3fff

const align4 = (n: number): number => (n + 3) & ~3

/** Builds the attribute section of a request. */
export class AttributeWriter {
  private readonly chunks: Array<Uint8Array> = []

  bytes(type: number, data: Uint8Array): this {
    const length = 4 + data.byteLength
    const chunk = new Uint8Array(align4(length))
    const view = new DataView(chunk.buffer)
    view.setUint16(0, length, true)
    view.setUint16(2, type, true)
    chunk.set(data, 4)
    this.chunks.push(chunk)
    return this
  }

  string(type: number, value: string): this {
    return this.bytes(type, new TextEncoder().encode(value + "\0"))
  }

  u32(type: number, value: number): this {
    const data = new Uint8Array(4)
    new DataView(data.buffer).setUint32(0, value, true)
    return this.bytes(type, data)
  }

  u64(type: number, value: bigint): this {
    const data = new Uint8Array(8)
    new DataView(data.buffer).setBigUint64(0, value, true)
    return this.bytes(type, data)
  }

  u16(type: number, value: number): this {
    const data = new Uint8Array(2)
    new DataView(data.buffer).setUint16(0, value, true)
    return this.bytes(type, data)
  }

  u8(type: number, value: number): this {
    return this.bytes(type, Uint8Array.of(value))
  }

  nested(type: number, build: (writer: AttributeWriter) => void): this {
    const inner = new AttributeWriter()
    build(inner)
    return this.bytes(type | NLA_F_NESTED, inner.finish())
  }

  /** A nested attribute whose content is already encoded (e.g. echoed from a dump). */
  nestedBytes(type: number, data: Uint8Array): this {
    return this.bytes(type | NLA_F_NESTED, data)
  }

  finish(): Uint8Array {
    const total = this.chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0)
    const out = new Uint8Array(total)
    let offset = 0
    for (const chunk of this.chunks) {
      out.set(chunk, offset)
      offset += chunk.byteLength
    }
    return out
  }
}

/** Header + family header + attributes as one request. */
export const encodeMessage = (
  type: number,
  flags: number,
  seq: number,
  familyHeader: Uint8Array,
  attributes: Uint8Array = new Uint8Array(0)
): Uint8Array => {
  const length = NLMSG_HDRLEN + align4(familyHeader.byteLength) + attributes.byteLength
  const out = new Uint8Array(length)
  const view = new DataView(out.buffer)
  view.setUint32(0, length, true)
  view.setUint16(4, type, true)
  view.setUint16(6, flags, true)
  view.setUint32(8, seq, true)
  view.setUint32(12, 0, true)
  out.set(familyHeader, NLMSG_HDRLEN)
  out.set(attributes, NLMSG_HDRLEN + align4(familyHeader.byteLength))
  return out
}

/** One decoded message of a reply datagram, header fields split out, payload not yet decoded. */
export interface NetlinkMessage {
  readonly type: number
  readonly flags: number
  readonly seq: number
  /** everything after the 16-byte header */
  readonly payload: Uint8Array
}

/** Splits a datagram into messages. */
export const decodeMessages = (data: Uint8Array): Array<NetlinkMessage> => {
  const messages: Array<NetlinkMessage> = []
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  let offset = 0
  while (offset + NLMSG_HDRLEN <= data.byteLength) {
    const length = view.getUint32(offset, true)
    if (length < NLMSG_HDRLEN || offset + length > data.byteLength) break
    messages.push({
      type: view.getUint16(offset + 4, true),
      flags: view.getUint16(offset + 6, true),
      seq: view.getUint32(offset + 8, true),
      payload: data.subarray(offset + NLMSG_HDRLEN, offset + length)
    })
    offset += align4(length)
  }
  return messages
}

/** Attributes by type (the last one wins for repeated types). */
export type Attributes = Map<number, Uint8Array>

/** The attributes of a payload (after its family header) by type, for looking fields up. */
export const decodeAttributes = (data: Uint8Array): Attributes => {
  const attributes: Attributes = new Map()
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  let offset = 0
  while (offset + 4 <= data.byteLength) {
    const length = view.getUint16(offset, true)
    if (length < 4 || offset + length > data.byteLength) break
    attributes.set(view.getUint16(offset + 2, true) & NLA_TYPE_MASK, data.subarray(offset + 4, offset + length))
    offset += align4(length)
  }
  return attributes
}

/** Every attribute in order, repeated types included (e.g. one IFLA_BRIDGE_VLAN_INFO per VLAN). */
export const decodeAttributeList = (data: Uint8Array): Array<{ readonly type: number; readonly data: Uint8Array }> => {
  const attributes: Array<{ readonly type: number; readonly data: Uint8Array }> = []
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  let offset = 0
  while (offset + 4 <= data.byteLength) {
    const length = view.getUint16(offset, true)
    if (length < 4 || offset + length > data.byteLength) break
    attributes.push({ type: view.getUint16(offset + 2, true) & NLA_TYPE_MASK, data: data.subarray(offset + 4, offset + length) })
    offset += align4(length)
  }
  return attributes
}

/** A u32 attribute (host order), or undefined when absent or too short. */
export const attrU32 = (attributes: Attributes, type: number): number | undefined => {
  const data = attributes.get(type)
  return data && data.byteLength >= 4 ? new DataView(data.buffer, data.byteOffset).getUint32(0, true) : undefined
}

/** A u8 attribute (a flag or small enum), or undefined when absent. */
export const attrU8 = (attributes: Attributes, type: number): number | undefined => {
  const data = attributes.get(type)
  return data && data.byteLength >= 1 ? data[0] : undefined
}

/** A NUL-terminated string attribute (a name, kind or alias), or undefined when absent. */
export const attrString = (attributes: Attributes, type: number): string | undefined => {
  const data = attributes.get(type)
  if (!data) return undefined
  const end = data.indexOf(0)
  return new TextDecoder().decode(end === -1 ? data : data.subarray(0, end))
}

/**
 * The errno (positive, 0 = ACK), extended-ack text and, when the kernel blamed one attribute
 * of the request, that attribute's offset from the start of the request, of an NLMSG_ERROR
 * payload.
 */
export const decodeError = (message: NetlinkMessage): { errno: number; text: string | undefined; offset: number | undefined } => {
  const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength)
  const errno = -view.getInt32(0, true)
  let text: string | undefined
  let offset: number | undefined
  if (message.flags & NLM_F_ACK_TLVS) {
    // error code (4), then the original request: its header only when NLM_F_CAPPED,
    // else the whole request; the TLVs follow.
    const requestLength = message.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(view.getUint32(4, true))
    const tlvs = decodeAttributes(message.payload.subarray(4 + requestLength))
    text = attrString(tlvs, NLMSGERR_ATTR_MSG)
    offset = attrU32(tlvs, NLMSGERR_ATTR_OFFS)
  }
  return { errno, text, offset }
}

const AF_INET = 2
const AF_INET6 = 10

/** The kernel's address-family code (linux/socket.h) of an IP family. */
export const addressFamilyCode = (family: 4 | 6): number => (family === 4 ? AF_INET : AF_INET6)

/** The IP family of a kernel address-family code; undefined for anything but AF_INET/AF_INET6. */
export const ipFamilyOfCode = (code: number): 4 | 6 | undefined => (code === AF_INET ? 4 : code === AF_INET6 ? 6 : undefined)
