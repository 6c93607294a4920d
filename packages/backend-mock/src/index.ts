import { Backend } from "@tscni/backend"
import { Context, Layer } from "effect"
import { type MockControl, makeMockBackend } from "./MockBackend.ts"

export type { MockCall } from "./faults.ts"
export { bootKernel, type MockControl, makeMockBackend } from "./MockBackend.ts"
export type { KernelSnapshot, NetnsSnapshot } from "./snapshot.ts"

/** The mock's control handle as a service, so tests written against layers can reach it. */
export class MockControlService extends Context.Service<MockControlService, MockControl>()("tscni/MockControl") {}

/** A fresh kernel per layer build: provides Backend and MockControlService. */
export const layer: Layer.Layer<Backend | MockControlService> = Layer.syncContext(() => {
  const { backend, control } = makeMockBackend()
  return Context.make(Backend, backend).pipe(Context.add(MockControlService, control))
})
