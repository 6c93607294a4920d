import { constants, promises as fs } from "node:fs"
import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import { Context, Effect, Layer, Option } from "effect"
import { fromSystemError, type InstallError } from "./errors.ts"
import { settleWrittenFile } from "./pageCache.ts"

/** What lstat says about a path, as much as the installer needs. */
export interface PathInfo {
  readonly type: "file" | "symlink" | "directory" | "other"
  /** permission bits only (`mode & 0o7777`) */
  readonly mode: number
}

/**
 * The file operations the installer's steps are made of. Each one is a single system
 * call or a small atomic unit (a temp file created exclusively, written, fsynced and
 * chmodded). A service so tests can inject a failure at any call (`./testing/faults.ts`).
 */
export interface HostFsShape {
  readonly lstat: (path: string) => Effect.Effect<Option.Option<PathInfo>, InstallError>
  readonly readLink: (path: string) => Effect.Effect<string, InstallError>
  readonly readText: (path: string) => Effect.Effect<string, InstallError>
  /** hex sha256 of a file's bytes */
  readonly sha256: (path: string) => Effect.Effect<string, InstallError>
  readonly readDir: (dir: string) => Effect.Effect<ReadonlyArray<string>, InstallError>
  readonly mkdir: (path: string, mode: number) => Effect.Effect<void, InstallError>
  readonly rmdir: (path: string) => Effect.Effect<void, InstallError>
  /** a hard link `to` of `existing` (a symlink is linked itself, not followed) */
  readonly link: (existing: string, to: string) => Effect.Effect<void, InstallError>
  /** creates `to` (which must not exist) with the bytes of `from`, fsyncs it, sets `mode` */
  readonly copyNew: (from: string, to: string, mode: number) => Effect.Effect<void, InstallError>
  /** creates `to` (which must not exist) holding `text`, fsyncs it, sets `mode` */
  readonly writeNew: (to: string, text: string, mode: number) => Effect.Effect<void, InstallError>
  readonly symlink: (target: string, path: string) => Effect.Effect<void, InstallError>
  readonly rename: (from: string, to: string) => Effect.Effect<void, InstallError>
  readonly unlink: (path: string) => Effect.Effect<void, InstallError>
  /** fsyncs a directory, so the renames in it are durable */
  readonly syncDir: (dir: string) => Effect.Effect<void, InstallError>
}

const call = <A>(operation: string, path: string, run: () => Promise<A>): Effect.Effect<A, InstallError> =>
  Effect.tryPromise({ try: run, catch: fromSystemError(operation, path) })

const typeOf = (stats: { isFile(): boolean; isSymbolicLink(): boolean; isDirectory(): boolean }): PathInfo["type"] =>
  stats.isSymbolicLink() ? "symlink" : stats.isFile() ? "file" : stats.isDirectory() ? "directory" : "other"

const hashFile = (path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const hash = createHash("sha256")
    createReadStream(path)
      .on("data", (chunk) => hash.update(chunk))
      .on("error", reject)
      .on("end", () => resolve(hash.digest("hex")))
  })

/** Opens `path` (created by the caller's write), fsyncs and chmods it, closes it. */
const syncAndChmod = async (path: string, mode: number): Promise<void> => {
  const handle = await fs.open(path, "r+")
  try {
    await handle.sync()
    await handle.chmod(mode)
  } finally {
    await handle.close()
  }
}

const real: HostFsShape = {
  lstat: (path) =>
    call("lstat", path, () => fs.lstat(path)).pipe(
      Effect.map((stats) => Option.some<PathInfo>({ type: typeOf(stats), mode: stats.mode & 0o7777 })),
      Effect.catchIf((error) => error.reason === "NotFound", () => Effect.succeed(Option.none<PathInfo>()))
    ),
  readLink: (path) => call("readlink", path, () => fs.readlink(path)),
  readText: (path) => call("read", path, () => fs.readFile(path, "utf8")),
  sha256: (path) => call("read", path, () => hashFile(path)),
  readDir: (dir) => call("readdir", dir, () => fs.readdir(dir)),
  mkdir: (path, mode) =>
    call("mkdir", path, async () => {
      await fs.mkdir(path, { mode })
      // mkdir's mode is filtered by the umask; the installer wants exactly `mode`
      await fs.chmod(path, mode)
    }),
  rmdir: (path) => call("rmdir", path, () => fs.rmdir(path)),
  link: (existing, to) => call("link", to, () => fs.link(existing, to)),
  copyNew: (from, to, mode) =>
    call("copy", to, async () => {
      await fs.copyFile(from, to, constants.COPYFILE_EXCL)
      // a binary: fsynced, and dropped from the page cache (best effort, see ./pageCache.ts)
      settleWrittenFile(to)
      await fs.chmod(to, mode)
    }),
  writeNew: (to, text, mode) =>
    call("write", to, async () => {
      await fs.writeFile(to, text, { flag: "wx", mode: 0o600 })
      await syncAndChmod(to, mode)
    }),
  symlink: (target, path) => call("symlink", path, () => fs.symlink(target, path)),
  rename: (from, to) => call("rename", to, () => fs.rename(from, to)),
  unlink: (path) => call("unlink", path, () => fs.unlink(path)),
  syncDir: (dir) =>
    call("fsync", dir, async () => {
      const handle = await fs.open(dir, "r")
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    })
}

/** The host's file system, through node:fs. */
export class HostFs extends Context.Service<HostFs, HostFsShape>()("tscni/install/HostFs") {
  static readonly layer: Layer.Layer<HostFs> = Layer.succeed(HostFs)(real)
  /** The real implementation, for wrapping (fault injection in tests). */
  static readonly real: HostFsShape = real
}
