/**
 * Dropping a file the installer just wrote from the page cache. A freshly written file
 * sits in the page cache as the write left it, in large folios, and the kernel maps each
 * folio whole into every process that executes the file: each short-lived plugin process
 * then counts ~5 MB more resident memory (a forwarded call: 31.3 instead of 26.0 MB,
 * docs/bench/README.md) for the same pages. Dropped after the fsync, the pages are read back
 * on the first exec as any installed executable's are. Best effort: a kernel or libc
 * that refuses changes nothing but that number.
 */
import { dlopen, FFIType } from "bun:ffi"
import { closeSync, fsyncSync, openSync } from "node:fs"

const POSIX_FADV_DONTNEED = 4

type Fadvise = (fd: number, offset: number, length: number, advice: number) => number

let fadvise: Fadvise | undefined | null

const loadFadvise = (): Fadvise | undefined => {
  if (fadvise === null) return undefined
  if (fadvise !== undefined) return fadvise
  try {
    const lib = dlopen("libc.so.6", { posix_fadvise: { args: [FFIType.i32, FFIType.i64, FFIType.i64, FFIType.i32], returns: FFIType.i32 } })
    fadvise = lib.symbols.posix_fadvise
    return fadvise
  } catch {
    fadvise = null
    return undefined
  }
}

/** Asks the kernel to drop the (already written back: fsync first) pages of the open file `fd`; true when it took the advice. */
const dropFromPageCache = (fd: number): boolean => loadFadvise()?.(fd, 0, 0, POSIX_FADV_DONTNEED) === 0

/**
 * What the installer does to a binary it wrote: fsynced (dirty pages cannot be dropped),
 * then dropped from the page cache; true when the kernel took the advice.
 */
export const settleWrittenFile = (path: string): boolean => {
  const fd = openSync(path, "r+")
  try {
    fsyncSync(fd)
    return dropFromPageCache(fd)
  } finally {
    closeSync(fd)
  }
}
