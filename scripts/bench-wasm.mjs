// One wasm variant on one model under Node (called by bench.mjs):
//   node scripts/bench-wasm.mjs <VARIANT> FILE.gguf PROMPT GEN RUNS [HEAD file|int8]
//     [THREADS, for the *-threads builds]
import { openSync, readSync, fstatSync, readFileSync, closeSync } from "node:fs";
import { Worker } from "node:worker_threads";

const [variant, model, p, g, runs, head = "file", threadArg = "1"] = process.argv.slice(2);
const threads = Number(threadArg);
const dir = new URL(`../dist/wasm/${variant}/`, import.meta.url);
const glueUrl = new URL("bitnet_web.js", dir);
const wasm = await import(glueUrl);
const module = new WebAssembly.Module(readFileSync(new URL("bitnet_web_bg.wasm", dir)));
const { memory } = wasm.initSync({ module });
if (threads > 1) {
  // The pool's threads: workers on the same module and shared memory (as the browser
  // package's pool workers are).
  await Promise.all(
    Array.from({ length: threads }, () => {
      const w = new Worker(new URL("bench-pool-thread.mjs", import.meta.url), {
        workerData: { glue: glueUrl.href, module, memory },
      });
      w.unref();
      return new Promise((ok, fail) => {
        w.once("message", ok);
        w.once("error", fail);
      });
    }),
  );
  wasm.buildThreadPool(threads);
}

try {
  wasm.kernelSelfTest(false);
} catch (e) {
  // e.g. Node 20's V8 implements a pre-standard relaxed SIMD: refuse to time wrong math.
  console.log(
    JSON.stringify({ threads: 1, skipped: `kernel self-test failed under Node ${process.version}: ${e.message}` }),
  );
  process.exit(0);
}

const fd = openSync(model, "r");
const size = fstatSync(fd).size;
const engine = new wasm.Engine({ expectedBytes: size, nCtx: 512, head });
const chunk = Buffer.allocUnsafe(16 << 20);
const t0 = performance.now();
for (;;) {
  const n = readSync(fd, chunk, 0, chunk.length, null);
  if (n === 0) break;
  engine.push(chunk.subarray(0, n));
}
closeSync(fd);
const info = engine.finish();
const loadS = (performance.now() - t0) / 1000;

const results = [];
for (let i = 0; i < Number(runs); i++) results.push(engine.benchmark(Number(p), Number(g)));
const median = (k) => results.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(results.length / 2)];
console.log(
  JSON.stringify({
    threads,
    prefill_tps: median("prefill_tps"),
    decode_tps: median("decode_tps"),
    kernels: info.kernels,
    head,
    prompt_tokens: Number(p),
    gen_tokens: Number(g),
    runs: Number(runs),
    load_s: loadS,
    wasm_memory_bytes: engine.stats().wasmMemoryBytes,
  }),
);
