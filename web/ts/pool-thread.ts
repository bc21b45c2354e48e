/**
 * One thread of the engine's pool (the `-threads` builds): the engine's worker starts one
 * of these per thread and sends it the compiled module and the shared memory. It
 * instantiates the same module on that memory, says it is ready, then runs one of rayon's
 * threads for as long as the engine lives.
 */
import * as relaxedThreads from "../wasm/relaxed-threads/bitnet_web.js";
import * as simd128Threads from "../wasm/simd128-threads/bitnet_web.js";

interface Start {
  variant: "relaxed-threads" | "simd128-threads";
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
}

self.onmessage = ({ data }: MessageEvent<Start>) => {
  const glue = data.variant === "relaxed-threads" ? relaxedThreads : simd128Threads;
  glue.initSync({ module: data.module, memory: data.memory });
  postMessage("ready");
  // Let the message leave before this thread blocks for good.
  setTimeout(() => glue.runPoolThread(), 0);
};
