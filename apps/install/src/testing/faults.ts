import { Effect, Layer } from "effect"
import { InstallError } from "../errors.ts"
import { HostFs, type HostFsShape } from "../HostFs.ts"

/** One HostFs call as the fault layer saw it. */
export interface FsCall {
  readonly operation: keyof HostFsShape
  readonly path: string
}

/** Arms and inspects the faults of a `faultyHostFs` layer. */
export interface FaultControl {
  /** fails the n-th HostFs call from now (1 = the next one), once, before it changes anything */
  readonly failNth: (n: number) => void
  /** fails every call that matches, before it changes anything */
  readonly failWhen: (predicate: (call: FsCall) => boolean) => void
  readonly reset: () => void
  /** every call since the last reset, in order */
  readonly calls: () => ReadonlyArray<FsCall>
  /** whether an armed fault has fired since it was armed */
  readonly fired: () => boolean
}

/**
 * The real HostFs with fault injection in front of every call, like MockBackend's
 * failNth: a fault fires before the operation, so the failed call changed nothing and
 * whatever follows (the step's own cleanup, the pipeline's rollback) runs for real.
 */
export const faultyHostFs = (base: HostFsShape = HostFs.real): { readonly layer: Layer.Layer<HostFs>; readonly control: FaultControl } => {
  let log: Array<FsCall> = []
  let countdown = 0
  let predicate: ((call: FsCall) => boolean) | undefined
  let fired = false

  const gate = (operation: keyof HostFsShape, path: string): Effect.Effect<void, InstallError> =>
    Effect.suspend(() => {
      const current = { operation, path }
      log.push(current)
      let fail = false
      if (countdown > 0) {
        countdown -= 1
        fail = countdown === 0
      }
      if (predicate?.(current)) fail = true
      if (!fail) return Effect.void
      fired = true
      return Effect.fail(
        new InstallError({ operation, path, reason: "Injected", message: `injected failure of ${operation} ${path}` })
      )
    })

  const shape: HostFsShape = {
    lstat: (path) => Effect.andThen(gate("lstat", path), base.lstat(path)),
    readLink: (path) => Effect.andThen(gate("readLink", path), base.readLink(path)),
    readText: (path) => Effect.andThen(gate("readText", path), base.readText(path)),
    sha256: (path) => Effect.andThen(gate("sha256", path), base.sha256(path)),
    readDir: (dir) => Effect.andThen(gate("readDir", dir), base.readDir(dir)),
    mkdir: (path, mode) => Effect.andThen(gate("mkdir", path), base.mkdir(path, mode)),
    rmdir: (path) => Effect.andThen(gate("rmdir", path), base.rmdir(path)),
    link: (existing, to) => Effect.andThen(gate("link", to), base.link(existing, to)),
    copyNew: (from, to, mode) => Effect.andThen(gate("copyNew", to), base.copyNew(from, to, mode)),
    writeNew: (to, text, mode) => Effect.andThen(gate("writeNew", to), base.writeNew(to, text, mode)),
    symlink: (target, path) => Effect.andThen(gate("symlink", path), base.symlink(target, path)),
    rename: (from, to) => Effect.andThen(gate("rename", to), base.rename(from, to)),
    unlink: (path) => Effect.andThen(gate("unlink", path), base.unlink(path)),
    syncDir: (dir) => Effect.andThen(gate("syncDir", dir), base.syncDir(dir))
  }

  const control: FaultControl = {
    failNth: (n) => {
      countdown = n
      fired = false
    },
    failWhen: (next) => {
      predicate = next
      fired = false
    },
    reset: () => {
      log = []
      countdown = 0
      predicate = undefined
      fired = false
    },
    calls: () => [...log],
    fired: () => fired
  }
  return { layer: Layer.succeed(HostFs)(shape), control }
}
