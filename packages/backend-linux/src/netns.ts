import { HOST_NETNS } from "@tscni/backend"
import { CLONE_NEWNET, errno, libc, NS_GET_NSTYPE, O_CLOEXEC, O_RDONLY } from "./libc.ts"
import { kernelError, KernelCallFailed } from "./errors.ts"

/** Opens a namespace path and verifies it is a network namespace. Throws KernelCallFailed. */
const openNetns = (path: string): number => {
  const fd = libc.open(path, O_RDONLY | O_CLOEXEC)
  if (fd < 0) throw new KernelCallFailed(kernelError("openNetns", errno(), path))
  if (libc.ioctl(fd, NS_GET_NSTYPE) !== CLONE_NEWNET) {
    libc.close(fd)
    throw new KernelCallFailed(kernelError("openNetns", 22, `${path} is not a network namespace`))
  }
  return fd
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
    // Failing to return home would leave every later call in the wrong namespace.
    if (libc.setns(home, CLONE_NEWNET) !== 0) throw new Error(`cannot return to own network namespace (errno ${errno()})`)
    libc.close(home)
    libc.close(target)
  }
}
