import { AF_NETLINK, errno, libc, NETLINK_EXT_ACK, NETLINK_ROUTE, SOCK_CLOEXEC, SOCK_RAW, SOL_NETLINK } from "../libc.ts"
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
const DUMP_RETRIES = 5

/**
 * A NETLINK_ROUTE socket bound to one network namespace: it is opened inside that
 * namespace and keeps talking to it after the thread switched back. All calls are
 * synchronous and throw KernelCallFailed.
 */
export class RouteSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff)
  private readonly buffer = new Uint8Array(RECEIVE_BUFFER)

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
      const length = libc.recv(this.fd, this.buffer)
      if (length < 0) throw new KernelCallFailed(kernelError(operation, errno(), "recv"))
      for (const message of decodeMessages(this.buffer.slice(0, length))) {
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
