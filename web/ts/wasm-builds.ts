/** The engine's WebAssembly builds, as data (wasm-builds.json). */
import type { WasmBuild } from "./types.js";
import list from "./wasm-builds.json" with { type: "json" };

/** An entry of wasm-builds.json. */
export interface WasmBuildSpec {
  name: WasmBuild;
  /** What its CPU kernels are, for people ("relaxed SIMD", "SIMD128", "scalar"). */
  kernels: string;
  /** The wasm features it is compiled with (`simd128`, `relaxed-simd`). */
  targetFeatures: string[];
  cargoFeatures: string[];
  /** Runs its kernels on a pool of web workers (needs cross-origin isolation). */
  threads: boolean;
  /** The WebGPU backend's build, never picked for the CPU. */
  gpu: boolean;
}

/** Every build, fastest first: what scripts/build-wasm.sh builds, the worker picks from
 * and the chat app names. */
export const WASM_BUILDS = list.builds as WasmBuildSpec[];
