import { closeSync, openSync, readSync, writeSync } from "node:fs"
import { sysctlSegments } from "@tscni/backend"
import { inNetns } from "./netns.ts"

/** `net.ipv4.conf.eth0.rp_filter` (or `net/ipv4/conf/eth0.1/rp_filter`) → its file under /proc/sys. */
const sysctlPath = (key: string): string => `/proc/sys/${sysctlSegments(key).join("/")}`

const readFd = (fd: number): string => {
  const buffer = Buffer.alloc(4096)
  const length = readSync(fd, buffer, 0, buffer.length, 0)
  return buffer.subarray(0, length).toString().trim()
}

// /proc/sys/net shows the namespace of the thread that opens the file, so the file is
// opened (and read/written, synchronously) inside the namespace. Throws fs errors.
const withSysctl = <A>(netns: string, key: string, mode: "r" | "r+", use: (fd: number) => A): A =>
  inNetns(netns, () => {
    const fd = openSync(sysctlPath(key), mode)
    try {
      return use(fd)
    } finally {
      closeSync(fd)
    }
  })

/** Reads a sysctl as seen from `netns` (trimmed), e.g. to save a value before tuning changes it. */
export const readSysctl = (netns: string, key: string): string => withSysctl(netns, key, "r", readFd)

/** Writes and returns the previous value. */
export const writeSysctl = (netns: string, key: string, value: string): string =>
  withSysctl(netns, key, "r+", (fd) => {
    const previous = readFd(fd)
    writeSync(fd, value, 0)
    return previous
  })
