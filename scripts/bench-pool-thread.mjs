// One thread of the engine's pool under Node (for bench-wasm.mjs with threads > 1): the
// threads build instantiated on the shared memory, then handed to rayon for good.
import { parentPort, workerData } from "node:worker_threads";

const glue = await import(workerData.glue);
glue.initSync({ module: workerData.module, memory: workerData.memory });
parentPort.postMessage("ready");
// Let the message go out before this thread blocks for good.
setTimeout(() => glue.runPoolThread(), 0);
