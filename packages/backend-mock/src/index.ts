import { Backend } from "@tscni/backend"
import { Context, Layer } from "effect"
import { type MockControl, type MockKernelOptions, makeMockBackend } from "./MockBackend.ts"

export type { MockCall } from "./faults.ts"
export { bootKernel, type MockControl, type MockKernelOptions, makeMockBackend } from "./MockBackend.ts"
export type { BridgeVlanEntry, IptablesTableSnapshot, KernelSnapshot, NetnsSnapshot } from "./snapshot.ts"
export type { BridgeVlanSupport } from "./state.ts"

/** The mock's control handle as a service, so tests written against layers can reach it. */
export class MockControlService extends Context.Service<MockControlService, MockControl>()("tscni/MockControl") {}

/** A fresh kernel, built as `options` say, per layer build: provides Backend and MockControlService. */
export const layerWith = (options: MockKernelOptions): Layer.Layer<Backend | MockControlService> =>
  Layer.syncContext(() => {
    const { backend, control } = makeMockBackend(options)
    return Context.make(Backend, backend).pipe(Context.add(MockControlService, control))
  })

/** A fresh kernel per layer build: provides Backend and MockControlService. */
export const layer: Layer.Layer<Backend | MockControlService> = layerWith({})
