/**
 * bitnet-web: BitNet b1.58 ternary LLMs in the browser.
 *
 *   const engine = await CreateEngine({ model: url, onProgress });
 *   const reply = await engine.chat.completions.create({ messages });
 */
export { CreateEngine, Engine } from "./engine.js";
export { BitnetError, type ErrorKind } from "./errors.js";
export { listCachedModels, deleteCachedModel } from "./cache.js";
export type * from "./types.js";
export { WASM_BUILDS, type WasmBuildSpec } from "./wasm-builds.js";
