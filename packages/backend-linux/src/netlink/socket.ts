import {
  AF_NETLINK,
  EAGAIN,
  errno,
  libc,
  MSG_DONTWAIT,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_ROUTE,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET
} from "../libc.ts"
import { kernelError, KernelCallFailed } from "../errors.ts"
import { HOST_NETNS } from "@tscni/backend"
import { inNetns, namespaceIdentity } from "../netns.ts"
import {
  decodeError,
  decodeMessages,
  encodeMessage,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  type NetlinkMessage
} from "./message.ts"

const RECEIVE_BUFFER = 1 << 16

/**
 * The one receive buffer of every socket: a receive is synchronous and copies what it
 * decodes out of it, so sockets never need it at the same time. (One each cost 64 KiB per
 * pod namespace a resident agent had a socket in at once: ~6 MB in a 100-pod burst.)
 */
const received = new Uint8Array(RECEIVE_BUFFER)
const DUMP_RETRIES = 5
/** nfnetlink's batch delimiters (NLMSG_MIN_TYPE and the next) */
const NFNL_MSG_BATCH_BEGIN = 0x10
const NFNL_MSG_BATCH_END = 0x11

/** One message of an nfnetlink batch (NLM_F_REQUEST and NLM_F_ACK are added). */
export interface BatchMessage {
  readonly type: number
  readonly flags: number
  readonly header: Uint8Array
  readonly attributes: Uint8Array
}

/** A message of a batch the kernel refused (index -1: the batch as a whole). */
export interface BatchFailure {
  readonly index: number
  readonly errno: number
  readonly text: string | undefined
  /** where in that message the attribute the kernel refused starts */
  readonly offset: number | undefined
}

/**
 * A NETLINK_ROUTE socket bound to one network namespace: it is opened inside that
 * namespace and keeps talking to it after the thread switched back. All calls are
 * synchronous and throw KernelCallFailed.
 */
export class RouteSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff)
  private cappedAcks = false
  /** every byte this socket received (tests and benchmarks read it: what a call cost) */
  bytesReceived = 0
  /** the largest datagram the send buffer surely takes (net.core.wmem_default is 208 KiB unless lowered) */
  private sendBuffer = 1 << 16

  private constructor(private readonly fd: number) {}

  /** `protocol`: NETLINK_ROUTE (rtnetlink) or NETLINK_NETFILTER (conntrack). */
  static open(netns: string, protocol = NETLINK_ROUTE): RouteSocket {
    const fd = inNetns(netns, () => libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol))
    if (fd < 0) throw new KernelCallFailed(kernelError("netlinkSocket", errno(), netns))
    libc.setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1)
    return new RouteSocket(fd)
  }

  close(): void {
    libc.close(this.fd)
  }

  private send(operation: string, type: number, flags: number, header: Uint8Array, attributes?: Uint8Array): number {
    const seq = ++this.seq
    const message = encodeMessage(type, flags | NLM_F_REQUEST, seq, header, attributes)
    if (libc.send(this.fd, message) < 0) throw new KernelCallFailed(kernelError(operation, errno(), "send"))
    return seq
  }

  /** Reads until the reply to `seq` is complete; returns data messages and whether the dump was interrupted. */
  private receive(operation: string, seq: number, subject?: string): { messages: Array<NetlinkMessage>; interrupted: boolean } {
    const messages: Array<NetlinkMessage> = []
    let interrupted = false
    for (;;) {
      const length = libc.recv(this.fd, received)
      if (length < 0) throw new KernelCallFailed(kernelError(operation, errno(), "recv"))
      this.bytesReceived += length
      for (const message of decodeMessages(received.slice(0, length))) {
        if (message.seq !== seq) continue
        if (message.flags & NLM_F_DUMP_INTR) interrupted = true
        if (message.type === NLMSG_DONE) return { messages, interrupted }
        if (message.type === NLMSG_ERROR) {
          const { errno: code, text } = decodeError(message)
          if (code === 0) return { messages, interrupted }
          const detail = [subject, text].filter((part) => part !== undefined && part !== "").join(": ")
          throw new KernelCallFailed(kernelError(operation, code, detail === "" ? undefined : detail))
        }
        messages.push(message)
      }
    }
  }

  /**
   * A request: sends with NLM_F_ACK and waits for the kernel's answer. `subject` (the
   * link or address concerned) goes into error messages.
   */
  request(
    operation: string,
    type: number,
    flags: number,
    header: Uint8Array,
    attributes?: Uint8Array,
    subject?: string
  ): Array<NetlinkMessage> {
    const seq = this.send(operation, type, flags | NLM_F_ACK, header, attributes)
    return this.receive(operation, seq, subject).messages
  }

  /**
   * An nfnetlink batch: NFNL_MSG_BATCH_BEGIN for `subsystem`, the messages (each with
   * NLM_F_ACK), NFNL_MSG_BATCH_END, sent as one datagram. The kernel applies the messages as
   * one transaction, all or nothing, and answers every message (it does so while the send
   * runs, so every answer is queued when send returns). Every answer is read. Returns the
   * failures: the failed message's index (-1: the batch as a whole, e.g. EPERM or a failed
   * commit), its errno, the kernel's text and the offset of the attribute it refused; [] when
   * the transaction was committed.
   */
  batch(operation: string, subsystem: number, messages: ReadonlyArray<BatchMessage>): Array<BatchFailure> {
    if (!this.cappedAcks) {
      // a failed message is answered with its header only, not the whole (up to 64 KiB) request
      libc.setsockoptInt(this.fd, SOL_NETLINK, NETLINK_CAP_ACK, 1)
      this.cappedAcks = true
    }
    const first = this.seq + 1
    this.seq += messages.length + 2
    const control = Uint8Array.of(0, 0, subsystem >> 8, subsystem & 0xff) // nfgenmsg, res_id in network order
    const parts = [
      encodeMessage(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first, control),
      ...messages.map((message, i) =>
        encodeMessage(message.type, message.flags | NLM_F_REQUEST | NLM_F_ACK, first + 1 + i, message.header, message.attributes)
      ),
      encodeMessage(NFNL_MSG_BATCH_END, NLM_F_REQUEST, first + messages.length + 1, control)
    ]
    const datagram = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0))
    let at = 0
    for (const part of parts) {
      datagram.set(part, at)
      at += part.byteLength
    }
    // the kernel refuses a datagram larger than the socket's send buffer (EMSGSIZE)
    if (datagram.byteLength > this.sendBuffer) {
      this.sendBuffer = datagram.byteLength * 2
      libc.setsockoptInt(this.fd, SOL_SOCKET, SO_SNDBUFFORCE, this.sendBuffer)
    }
    if (libc.send(this.fd, datagram) < 0) throw new KernelCallFailed(kernelError(operation, errno(), "send"))
    const failures: Array<BatchFailure> = []
    const answered = new Set<number>()
    let whole = false
    // wait for an answer to each message (or one to the batch as a whole), then take what else is queued
    for (;;) {
      const settled = whole || answered.size === messages.length
      const length = libc.recv(this.fd, received, settled ? MSG_DONTWAIT : 0)
      if (length < 0) {
        const code = errno()
        if (settled && code === EAGAIN) return failures
        throw new KernelCallFailed(kernelError(operation, code, "recv"))
      }
      this.bytesReceived += length
      for (const message of decodeMessages(received.slice(0, length))) {
        if (message.type !== NLMSG_ERROR || message.seq < first || message.seq > first + messages.length + 1) continue
        const { errno: code, text, offset } = decodeError(message)
        const index = message.seq === first || message.seq === first + messages.length + 1 ? -1 : message.seq - first - 1
        if (index === -1) whole = true
        else answered.add(index)
        if (code !== 0) failures.push({ index, errno: code, text, offset })
      }
    }
  }

  /** A dump; restarted when the kernel flags it as interrupted by a concurrent change. */
  dump(operation: string, type: number, header: Uint8Array, attributes?: Uint8Array): Array<NetlinkMessage> {
    for (let attempt = 1; ; attempt++) {
      const seq = this.send(operation, type, NLM_F_DUMP, header, attributes)
      const { messages, interrupted } = this.receive(operation, seq)
      if (!interrupted || attempt >= DUMP_RETRIES) return messages
    }
  }
}

const NETLINK_NETFILTER = 12
/** Open sockets by `protocol:path`, each with the identity of the namespace it was opened in. */
const sockets = new Map<string, { readonly socket: RouteSocket; readonly netns: string; readonly identity: string | undefined }>()

const cached = (netns: string, protocol: number): RouteSocket => {
  const key = `${protocol}:${netns}`
  const identity = namespaceIdentity(netns)
  const entry = sockets.get(key)
  if (entry !== undefined && entry.identity === identity) return entry.socket
  // the path names another namespace now (or none): never talk to the old one
  entry?.socket.close()
  sockets.delete(key)
  const socket = RouteSocket.open(netns, protocol)
  sockets.set(key, { socket, netns, identity })
  return socket
}

/**
 * One rtnetlink socket per namespace, reused while the path names the same namespace: for
 * the life of a plugin process, or of a resident daemon's requests (see
 * releaseNamespaceSockets).
 */
export const routeSocket = (netns: string): RouteSocket => cached(netns, NETLINK_ROUTE)

/** The same for netfilter (conntrack). */
export const netfilterSocket = (netns: string): RouteSocket => cached(netns, NETLINK_NETFILTER)

/** Closes the namespace's sockets, e.g. before the namespace is deleted. */
export const closeRouteSocket = (netns: string): void => {
  for (const protocol of [NETLINK_ROUTE, NETLINK_NETFILTER]) {
    sockets.get(`${protocol}:${netns}`)?.socket.close()
    sockets.delete(`${protocol}:${netns}`)
  }
}

/** Every namespace other than the process's own that a socket is open in. */
export const namespacesWithSockets = (): ReadonlyArray<string> =>
  [...new Set([...sockets.values()].map((entry) => entry.netns))].filter((netns) => netns !== HOST_NETNS)
