import { Effect, Schema } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { sameCidrText } from "@tscni/ip"
import { ignoreNotFound } from "./internal.ts"

/**
 * An address (CIDR form) to put on a link. `noDad`: an IPv6 address skips duplicate address
 * detection (IFA_F_NODAD), so it is usable at once, a route from it included (ip shows the
 * flag `nodad`); for addresses that are the pod's or the host end's by construction.
 */
export interface AddAddressInput {
  readonly netns: string
  readonly link: string
  readonly cidr: string
  readonly noDad?: boolean
}

/** `created` is false when the address was already there and was adopted, not added. */
export const AddAddressHandle = Schema.Struct({
  netns: Schema.String,
  link: Schema.String,
  cidr: Schema.String,
  created: Schema.Boolean
})
export type AddAddressHandle = typeof AddAddressHandle.Type

const STEP = "addAddress"

/**
 * Assigns an address to a link. An address already present (a bridge's gateway address
 * shared by every pod) is adopted and never removed by undo, so one pod's DEL cannot take
 * the gateway away from the others.
 */
export const addAddress = makeStep<AddAddressInput, AddAddressHandle, BackendError, Backend>({
  name: STEP,
  handle: AddAddressHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const { netns, link, cidr, noDad } = input
      const present = yield* backend.listAddresses(netns, link)
      if (present.some((address) => sameCidrText(address.cidr, cidr))) return { netns, link, cidr, created: false }
      yield* backend.addAddress(netns, link, cidr, noDad === true ? { noDad } : undefined)
      return { netns, link, cidr, created: true }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      if (!handle.created) return
      const backend = yield* Backend
      yield* ignoreNotFound(backend.deleteAddress(handle.netns, handle.link, handle.cidr))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const present = (yield* ignoreNotFound(backend.listAddresses(handle.netns, handle.link))) ?? []
      yield* ensure(STEP, present.some((address) => sameCidrText(address.cidr, handle.cidr)), () =>
        `${handle.cidr} is not on ${handle.link} in ${handle.netns}`)
    })
})
