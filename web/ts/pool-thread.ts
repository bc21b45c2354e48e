/**
 * One thread of the engine's pool (the `-threads` builds). The page starts one of these
 * per thread and passes it, from the engine's worker, the compiled module and the shared
 * memory. The thread instantiates the same module on that memory, says it is ready, then
 * runs one of rayon's threads for as long as the engine lives.
 */
import * as relaxedThreads from "../wasm/relaxed-threads/bitnet_web.js";
import * as simd128Threads from "../wasm/simd128-threads/bitnet_web.js";
import type { PoolThreadReply, PoolThreadStart } from "./protocol.js";

const reply = (r: PoolThreadReply) => postMessage(r);

self.onmessage = ({ data }: MessageEvent<PoolThreadStart>) => {
  const glue = data.variant === "relaxed-threads" ? relaxedThreads : simd128Threads;
  try {
    glue.initSync({ module: data.module, memory: data.memory });
  } catch (e) {
    reply({ ok: false, why: `it could not instantiate the module on the shared memory: ${String(e)}` });
    return;
  }
  reply({ ok: true });
  // Let the message leave before this thread blocks for good.
  setTimeout(() => glue.runPoolThread(), 0);
};

// A start message this thread cannot receive (a shared memory the browser will not share
// with it) arrives as this event: without an answer the engine's worker would wait for it
// until its deadline.
self.onmessageerror = () => reply({ ok: false, why: "the browser did not hand it the module and the shared memory" });
