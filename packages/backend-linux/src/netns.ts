import { existsSync, mkdirSync, rmSync, statSync } from "node:fs"
import { BackendError, HOST_NETNS } from "@tscni/backend"
import {
  CLONE_NEWNET,
  errno,
  libc,
  MNT_DETACH,
  MS_BIND,
  MS_REC,
  MS_SHARED,
  NS_GET_NSTYPE,
  O_CLOEXEC,
  O_CREAT,
  O_EXCL,
  O_RDONLY
} from "./libc.ts"
import { kernelError, KernelCallFailed } from "./errors.ts"

/**
 * This thread could not switch back to its own network namespace: every later kernel call
 * (of this plugin or of the rollback) would act on the wrong namespace. No answer can be
 * trusted any more, so the process stops at once (the runtime sees a failed plugin).
 */
const strandedInNamespace = (): never => {
  process.stderr.write(`tscni: cannot return to the plugin's own network namespace (errno ${errno()}); aborting\n`)
  process.abort()
}

/** Opens a namespace path and verifies it is a network namespace. Throws KernelCallFailed. */
const openNetns = (path: string): number => {
  const fd = libc.open(path, O_RDONLY | O_CLOEXEC)
  if (fd < 0) throw new KernelCallFailed(netnsError(errno(), path))
  if (libc.ioctl(fd, NS_GET_NSTYPE) !== CLONE_NEWNET) {
    libc.close(fd)
    throw new KernelCallFailed(netnsError(22, `${path} is not a network namespace`))
  }
  return fd
}

const netnsError = (code: number, detail: string): BackendError => {
  const { operation, reason, message, errno } = kernelError("openNetns", code, detail)
  return new BackendError({ operation, reason, message, ...(errno ? { errno } : {}), netns: true })
}

/**
 * An fd for IFLA_NET_NS_FD, passed to `use` and closed afterwards. HOST_NETNS is the
 * namespace this process runs in.
 */
export const withNetnsFd = <A>(path: string, use: (fd: number) => A): A => {
  const fd = path === HOST_NETNS ? libc.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) : openNetns(path)
  if (fd < 0) throw new KernelCallFailed(kernelError("openNetns", errno(), path))
  try {
    return use(fd)
  } finally {
    libc.close(fd)
  }
}

/** True when `path` exists and is a network namespace. */
export const isNetns = (path: string): boolean => {
  if (path === HOST_NETNS) return true
  const fd = libc.open(path, O_RDONLY | O_CLOEXEC)
  if (fd < 0) return false
  const isNet = libc.ioctl(fd, NS_GET_NSTYPE) === CLONE_NEWNET
  libc.close(fd)
  return isNet
}

/**
 * Runs synchronous work with this thread inside the namespace at `path`, and switches back
 * on every path out. Namespaces are per thread and Bun does I/O on other threads, so `work`
 * must not await: open a socket, write a sysctl, return.
 */
export const inNetns = <A>(path: string, work: () => A): A => {
  if (path === HOST_NETNS) return work()
  const target = openNetns(path)
  const home = libc.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
  if (home < 0) {
    libc.close(target)
    throw new KernelCallFailed(kernelError("inNetns", errno(), "opening own namespace"))
  }
  if (libc.setns(target, CLONE_NEWNET) !== 0) {
    const code = errno()
    libc.close(target)
    libc.close(home)
    throw new KernelCallFailed(kernelError("inNetns", code, path))
  }
  try {
    return work()
  } finally {
    if (libc.setns(home, CLONE_NEWNET) !== 0) strandedInNamespace()
    libc.close(home)
    libc.close(target)
  }
}

/** Where named namespaces live, shared with `ip netns`. */
export const NETNS_RUN_DIR = "/var/run/netns"

const fail = (operation: string, code: number, detail: string): never => {
  throw new KernelCallFailed(kernelError(operation, code, detail))
}

// As `ip netns add` does: the directory is a shared mount so namespace mounts made here
// are seen from other mount namespaces (e.g. a runtime's).
const shareRunDir = (): void => {
  mkdirSync(NETNS_RUN_DIR, { recursive: true })
  if (libc.mount("none", NETNS_RUN_DIR, MS_SHARED | MS_REC) === 0) return
  if (errno() !== 22) fail("createNetns", errno(), `making ${NETNS_RUN_DIR} shared`)
  if (libc.mount(NETNS_RUN_DIR, NETNS_RUN_DIR, MS_BIND | MS_REC) !== 0) fail("createNetns", errno(), `bind ${NETNS_RUN_DIR}`)
  if (libc.mount("none", NETNS_RUN_DIR, MS_SHARED | MS_REC) !== 0) fail("createNetns", errno(), `making ${NETNS_RUN_DIR} shared`)
}

/**
 * Creates a named network namespace (`/var/run/netns/NAME`, interchangeable with
 * `ip netns add`): a new namespace is made on this thread, bind-mounted to the file, and
 * the thread returns home — all synchronously.
 */
export const createNetns = (name: string): string => {
  if (name === "" || name === "." || name === ".." || name.includes("/")) fail("createNetns", 22, `bad name '${name}'`)
  shareRunDir()
  const path = `${NETNS_RUN_DIR}/${name}`
  const placeholder = libc.open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC)
  if (placeholder < 0) fail("createNetns", errno(), path)
  libc.close(placeholder)
  const home = libc.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
  try {
    if (home < 0) fail("createNetns", errno(), "opening own namespace")
    if (libc.unshare(CLONE_NEWNET) !== 0) fail("createNetns", errno(), "unshare")
    const mounted = libc.mount("/proc/thread-self/ns/net", path, MS_BIND)
    const code = errno()
    if (libc.setns(home, CLONE_NEWNET) !== 0) strandedInNamespace()
    if (mounted !== 0) fail("createNetns", code, `bind mount ${path}`)
    return path
  } catch (error) {
    rmSync(path, { force: true })
    throw error
  } finally {
    if (home >= 0) libc.close(home)
  }
}

/** Unmounts and removes a namespace made by createNetns (or `ip netns add`). */
export const deleteNetns = (path: string): void => {
  if (!existsSync(path)) fail("deleteNetns", 2, path)
  if (libc.umount2(path, MNT_DETACH) !== 0 && errno() !== 22) fail("deleteNetns", errno(), `umount ${path}`)
  rmSync(path, { force: true })
}

/**
 * Which namespace a path names now ("device:inode" of the nsfs file), undefined when it
 * names none. Caches keyed by path (netlink sockets, nft contexts) compare it on each use:
 * in a long-lived process (the resident daemon) a pod's path can be bound to a new
 * namespace after the old one was deleted, and a socket opened in the old one would talk
 * to a namespace nobody sees any more.
 */
export const namespaceIdentity = (path: string): string | undefined => {
  if (path === HOST_NETNS) return HOST_NETNS
  try {
    const stat = statSync(path)
    return `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}
