import { dlopen, FFIType, read } from "bun:ffi"

/**
 * The few libc calls the Linux backend needs, bound once through bun:ffi. Everything here
 * is synchronous: that is what makes it safe to switch network namespaces around it.
 */
const lib = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  open: { args: [FFIType.cstring, FFIType.i32, FFIType.u32], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  setns: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  ioctl: { args: [FFIType.i32, FFIType.u64], returns: FFIType.i32 },
  unshare: { args: [FFIType.i32], returns: FFIType.i32 },
  mount: { args: [FFIType.cstring, FFIType.cstring, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  umount2: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr }
})

/** socket(2) domain of the netlink sockets every kernel call goes through. */
export const AF_NETLINK = 16
/** Netlink sockets are datagram-style raw sockets. */
export const SOCK_RAW = 3
/** Keeps the netlink fd from leaking into the plugins and tools the process spawns. */
export const SOCK_CLOEXEC = 0o2000000
/** The rtnetlink protocol: links, addresses, routes, qdiscs. */
export const NETLINK_ROUTE = 0
/** setsockopt level for the netlink options below. */
export const SOL_NETLINK = 270
/** Asks the kernel for its extended-ack text, which makes netlink errors say what was wrong. */
export const NETLINK_EXT_ACK = 11
/** Error replies echo only the failed request's header, not the whole (possibly large) request. */
export const NETLINK_CAP_ACK = 10
/** setsockopt level of the socket buffer sizes. */
export const SOL_SOCKET = 1
/** The send buffer size, beyond the wmem_max limit (CAP_NET_ADMIN): one nfnetlink batch is one datagram. */
export const SO_SNDBUFFORCE = 32
/** recv flag: return EAGAIN instead of waiting when nothing is queued. */
export const MSG_DONTWAIT = 0x40
/** errno of a MSG_DONTWAIT recv on an empty queue. */
export const EAGAIN = 11
/** Namespace files are only opened to get an fd for setns/ioctl, never read. */
export const O_RDONLY = 0
/** Keeps namespace fds from leaking into spawned processes. */
export const O_CLOEXEC = 0o2000000
/** With O_EXCL: creates the placeholder file a new namespace is bind-mounted onto. */
export const O_CREAT = 0o100
/** Makes creating a named namespace fail if the name is taken, instead of mounting over it. */
export const O_EXCL = 0o200
/** The network-namespace type: for setns/unshare, and what NS_GET_NSTYPE must answer for a netns path. */
export const CLONE_NEWNET = 0x40000000
/** ioctl on a namespace fd: which kind of namespace it is */
export const NS_GET_NSTYPE = 0xb703

/** errno of the last failed call on this thread. */
export const errno = (): number => {
  const location = lib.symbols.__errno_location()
  return location === null ? 0 : read.i32(location, 0)
}

const cstr = (text: string): Buffer => Buffer.from(text + "\0")

/**
 * The typed wrappers over the raw symbols (strings made C strings, bigint lengths made
 * numbers); they return the raw result, and callers read errno() on failure.
 */
export const libc = {
  socket: (domain: number, type: number, protocol: number): number => lib.symbols.socket(domain, type, protocol),
  setsockoptInt: (fd: number, level: number, name: number, value: number): number => {
    const buffer = new Int32Array([value])
    return lib.symbols.setsockopt(fd, level, name, buffer, 4)
  },
  send: (fd: number, data: Uint8Array): number => Number(lib.symbols.send(fd, data, data.byteLength, 0)),
  /** `flags`: 0 (wait for a datagram) or MSG_DONTWAIT (EAGAIN when none is queued) */
  recv: (fd: number, into: Uint8Array, flags = 0): number => Number(lib.symbols.recv(fd, into, into.byteLength, flags)),
  open: (path: string, flags: number, mode = 0o444): number => lib.symbols.open(cstr(path), flags, mode),
  close: (fd: number): number => lib.symbols.close(fd),
  setns: (fd: number, nstype: number): number => lib.symbols.setns(fd, nstype),
  ioctl: (fd: number, request: number): number => lib.symbols.ioctl(fd, request),
  unshare: (flags: number): number => lib.symbols.unshare(flags),
  /** mount(2) with no filesystem type and no data: bind mounts and propagation changes */
  mount: (source: string, target: string, flags: number): number =>
    lib.symbols.mount(cstr(source), cstr(target), null, flags, null),
  umount2: (target: string, flags: number): number => lib.symbols.umount2(cstr(target), flags)
}

/** Bind mount: how a namespace is pinned to a path under /var/run/netns. */
export const MS_BIND = 0x1000
/** Applies a mount or propagation change to the whole subtree (the netns run dir). */
export const MS_REC = 0x4000
/**
 * Makes the netns run dir a shared mount, so namespace mounts made there show up in other
 * mount namespaces, as `ip netns` does.
 */
export const MS_SHARED = 1 << 20
/** Lazy unmount: deleting a namespace succeeds even while something still holds it open. */
export const MNT_DETACH = 2

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  28: "ENOSPC",
  34: "ERANGE",
  40: "ELOOP",
  90: "EMSGSIZE",
  95: "EOPNOTSUPP",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  105: "ENOBUFS"
}

/** Symbolic errno for error messages and reasons; unknown codes keep their number. */
export const errnoName = (code: number): string => ERRNO_NAMES[code] ?? `errno ${code}`
