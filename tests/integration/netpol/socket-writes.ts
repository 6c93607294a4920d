/**
 * Whole writes on a Bun socket: `socket.write` may take only part of the bytes; the rest
 * waits here until the socket's `drain`, which calls `flushUnsent`. Shared by the probe
 * agent and its driver, both ends of the control channel.
 */
import type { Socket } from "bun"

const unsent = new WeakMap<object, Buffer>()

/** Writes all of `bytes`, now or at the next drains, in order. */
export const writeAll = (socket: Socket<undefined>, bytes: Buffer): void => {
  const waiting = unsent.get(socket)
  if (waiting !== undefined) {
    unsent.set(socket, Buffer.concat([waiting, bytes]))
    return
  }
  const written = Math.max(socket.write(bytes), 0)
  if (written < bytes.length) unsent.set(socket, bytes.subarray(written))
}

/** The socket's `drain` handler: sends what an earlier write left. */
export const flushUnsent = (socket: Socket<undefined>): void => {
  const waiting = unsent.get(socket)
  unsent.delete(socket)
  if (waiting !== undefined) writeAll(socket, waiting)
}
