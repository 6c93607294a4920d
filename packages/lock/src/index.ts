/**
 * flock(2) on a lock file: exclusive (host-local's store, the same lock the reference
 * host-local takes — go-filemutex flocks `<dataDir>/<network>/lock` — so tscni and
 * reference plugins sharing a store exclude each other), or shared (many bridge ADDs at once,
 * excluding only the DEL that would remove their bridge).
 *
 * The lock is taken with LOCK_NB and polled with short sleeps instead of a blocking flock:
 * a blocking call would freeze Bun's only JS thread, so two fibers of one process (host-local
 * run in-process by another plugin, or tests) would deadlock; polling also lets the wait be
 * interrupted and bounded.
 */
import { closeSync, constants, mkdirSync, openSync } from "node:fs"
import { dirname } from "node:path"
import { dlopen, FFIType, read } from "bun:ffi"
import { Duration, Effect, Schema } from "effect"

const LOCK_SH = 1
const LOCK_EX = 2
const LOCK_NB = 4
const LOCK_UN = 8
const EINTR = 4
const EWOULDBLOCK = 11

interface Flock {
  readonly flock: (fd: number, operation: number) => number
  readonly errno: () => number
}

let flockLib: Flock | undefined

/** libc's flock, bound on first use (a process that never locks never opens libc). */
const libc = (): Flock => {
  if (flockLib !== undefined) return flockLib
  const lib = dlopen("libc.so.6", {
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr }
  })
  flockLib = {
    flock: (fd, operation) => lib.symbols.flock(fd, operation),
    errno: () => {
      const location = lib.symbols.__errno_location()
      return location === null ? 0 : read.i32(location, 0)
    }
  }
  return flockLib
}

/** Why the lock could not be had: `busy` when another holder kept it past the timeout. */
export class LockFailure extends Schema.TaggedError<LockFailure>()("LockFailure", {
  path: Schema.String,
  busy: Schema.Boolean,
  message: Schema.String
}) {}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** Where tscni keeps its lock files (tmpfs: gone after a reboot, like the locks themselves); TSCNI_LOCK_DIR moves it (tests). */
export const LOCK_DIR = process.env.TSCNI_LOCK_DIR ?? "/run/tscni"

/** Opens (creating it, and its directory when missing: root-only) the lock file. */
const openLockFile = (path: string): Effect.Effect<number, LockFailure> =>
  Effect.try({
    try: () => {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
      return openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600)
    },
    catch: (error) => new LockFailure({ path, busy: false, message: `opening ${path}: ${describe(error)}` })
  })

/** One non-blocking attempt: true when we hold the lock, false when someone else does. */
const tryLock = (fd: number, path: string, mode: number): Effect.Effect<boolean, LockFailure> =>
  Effect.suspend(() => {
    const lib = libc()
    for (;;) {
      if (lib.flock(fd, mode | LOCK_NB) === 0) return Effect.succeed(true)
      const errno = lib.errno()
      if (errno === EINTR) continue
      if (errno === EWOULDBLOCK) return Effect.succeed(false)
      return Effect.fail(new LockFailure({ path, busy: false, message: `flock ${path}: errno ${errno}` }))
    }
  })

/**
 * Runs `effect` while holding an exclusive flock on `path` (created if missing). Waits up
 * to `timeout`, then fails with `busy: true`; lock failures go through `onLockFailure` so
 * callers keep one error type. The lock goes with the descriptor, so it is released on
 * every exit path, interruption included, and by the kernel if the process dies.
 */
export const withFileLock = <A, E, R, E2>(
  path: string,
  effect: Effect.Effect<A, E, R>,
  onLockFailure: (failure: LockFailure) => E2,
  timeout: Duration.Input = Duration.seconds(30),
  mode: "exclusive" | "shared" = "exclusive"
): Effect.Effect<A, E | E2, R> =>
  Effect.acquireUseRelease(
    openLockFile(path).pipe(Effect.mapError(onLockFailure)),
    (fd) =>
      waitForLock(fd, path, timeout, mode === "shared" ? LOCK_SH : LOCK_EX).pipe(
        Effect.mapError(onLockFailure),
        Effect.andThen(effect)
      ),
    (fd) =>
      Effect.sync(() => {
        libc().flock(fd, LOCK_UN)
        closeSync(fd)
      })
  )

/** Polls for the lock with jittered exponential backoff (many waiters must not poll in lockstep). */
const waitForLock = (fd: number, path: string, timeout: Duration.Input, mode: number): Effect.Effect<void, LockFailure> =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(timeout)
    let pause = 1
    while (!(yield* tryLock(fd, path, mode))) {
      if (Date.now() >= deadline) {
        return yield* new LockFailure({ path, busy: true, message: `timed out waiting for the lock on ${path}` })
      }
      yield* Effect.sleep(Duration.millis(pause + Math.random() * pause))
      pause = Math.min(pause * 2, 20)
    }
  })

export { errnoCode, listFiles, readFileIfExists, removeFileIfExists, replaceFile, writeNewFile } from "./files.ts"
