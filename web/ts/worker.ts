/**
 * The module worker that owns the engine. Requests run one at a time, in order, so two
 * generations never share the KV cache; an abort message is handled at once because
 * every generation yields to the event loop between prefill chunks and tokens.
 */
import * as relaxed from "../wasm/relaxed/bitnet_web.js";
import * as relaxedThreads from "../wasm/relaxed-threads/bitnet_web.js";
import * as simd128 from "../wasm/simd128/bitnet_web.js";
import * as simd128Threads from "../wasm/simd128-threads/bitnet_web.js";
import * as scalar from "../wasm/scalar/bitnet_web.js";
import * as webgpu from "../wasm/webgpu/bitnet_web.js";
import { streamModel } from "./download.js";
import { BitnetError, toPlain } from "./errors.js";
import type { EngineCompletion, LoadRequest, Reply, Request } from "./protocol.js";
import type { LoadResult } from "./types.js";

type Glue = typeof simd128;
type ThreadsGlue = typeof simd128Threads;
type Variant = "relaxed" | "simd128" | "scalar" | "webgpu" | "relaxed-threads" | "simd128-threads";

// The webgpu build has every method of the CPU builds plus the GPU ones.
type GpuEngine = InstanceType<typeof webgpu.Engine>;

const builds: Record<Variant, { glue: Glue; wasm: URL }> = {
  webgpu: { glue: webgpu as unknown as Glue, wasm: new URL("../wasm/webgpu/bitnet_web_bg.wasm", import.meta.url) },
  "relaxed-threads": {
    glue: relaxedThreads as unknown as Glue,
    wasm: new URL("../wasm/relaxed-threads/bitnet_web_bg.wasm", import.meta.url),
  },
  "simd128-threads": {
    glue: simd128Threads as unknown as Glue,
    wasm: new URL("../wasm/simd128-threads/bitnet_web_bg.wasm", import.meta.url),
  },
  relaxed: { glue: relaxed, wasm: new URL("../wasm/relaxed/bitnet_web_bg.wasm", import.meta.url) },
  simd128: { glue: simd128, wasm: new URL("../wasm/simd128/bitnet_web_bg.wasm", import.meta.url) },
  scalar: { glue: scalar, wasm: new URL("../wasm/scalar/bitnet_web_bg.wasm", import.meta.url) },
};

// The smallest modules using a SIMD128 and a relaxed-SIMD instruction.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15,
  253, 128, 2, 11,
]);

let engine: InstanceType<Glue["Engine"]> | null = null;
let backend = "";
/** Generations run on the GPU (the webgpu build, after `useGpu` succeeded). */
let gpuActive = false;
/** Set by a panic: the wasm instance cannot be trusted after one. */
let crashed: string | null = null;
let lastConsoleError = "";
const aborted = new Set<number>();
let queue: Promise<void> = Promise.resolve();

// console_error_panic_hook prints the panic message with console.error; keep it so the
// page gets the message, not just "unreachable".
const consoleError = console.error.bind(console);
console.error = (...args: unknown[]) => {
  lastConsoleError = args.map(String).join(" ");
  consoleError(...args);
};

const post = (r: Reply) => (self as unknown as Worker).postMessage(r);

self.onmessage = (e: MessageEvent<Request>) => {
  const req = e.data;
  if (req.op === "abort") {
    aborted.add(req.target);
    return;
  }
  queue = queue.then(() => handle(req));
};

async function handle(req: Request): Promise<void> {
  try {
    if (crashed && req.op !== "unload") {
      throw new BitnetError("panic", `the engine crashed earlier (${crashed}); the next request starts a fresh worker`);
    }
    post({ id: req.id, kind: "result", value: await run(req) });
  } catch (e) {
    let err = toPlain(e);
    if (e instanceof WebAssembly.RuntimeError) {
      crashed = lastConsoleError || String(e);
      err = { kind: "panic", message: `the engine crashed: ${crashed}; the next request starts a fresh worker` };
      engine = null;
    }
    post({ id: req.id, kind: "error", error: err });
  } finally {
    aborted.delete(req.id);
  }
}

async function run(req: Request): Promise<unknown> {
  switch (req.op) {
    case "load":
      return load(req);
    case "chat":
      live().beginChat(req.messages, req.options);
      return generate(req.id);
    case "complete":
      live().beginComplete(req.prompt, req.options);
      return generate(req.id);
    case "tokenize":
      return Array.from(live().tokenize(req.text, true, req.special));
    case "detokenize":
      return live().detokenize(Uint32Array.from(req.ids));
    case "resetChat":
      live().resetChat();
      return null;
    case "stats":
      return { ...live().stats(), backend };
    case "unload":
      engine?.free();
      engine = null;
      gpuActive = false;
      return null;
    case "panic":
      live().panicForTesting();
      return null;
    case "loseGpu":
      return (live() as unknown as GpuEngine).loseGpuForTesting?.() ?? false;
    case "abort":
      return null;
  }
}

function live() {
  if (!engine) throw new BitnetError("unloaded", "no model is loaded");
  return engine;
}

async function pickBuild(wanted: LoadRequest["wasmVariant"] | "webgpu", threads: number): Promise<Variant> {
  const relaxedOk = WebAssembly.validate(RELAXED_PROBE);
  const simdOk = WebAssembly.validate(SIMD_PROBE);
  // Threads need a shared memory, which browsers give only to cross-origin-isolated pages.
  const threadsOk = threads > 1 && self.crossOriginIsolated === true;
  const candidates: Variant[] =
    wanted === "webgpu"
      ? ["webgpu"]
      : wanted === "auto"
        ? [
            ...(threadsOk && relaxedOk ? (["relaxed-threads"] as const) : []),
            ...(threadsOk && simdOk ? (["simd128-threads"] as const) : []),
            ...(relaxedOk ? (["relaxed"] as const) : []),
            ...(simdOk ? (["simd128"] as const) : []),
            "scalar",
          ]
        : [wanted];
  for (const v of candidates) {
    const b = builds[v];
    try {
      if (v.endsWith("-threads")) await startThreads(v, threads);
      else await b.glue.default({ module_or_path: b.wasm });
      // Some engines ship a pre-standard relaxed SIMD with other results: trust only
      // a build whose kernels agree with the scalar reference here.
      b.glue.kernelSelfTest();
      return v;
    } catch (e) {
      if (wanted !== "auto") throw e;
      consoleError(`bitnet-web: the ${v} build is not usable here:`, e);
    }
  }
  throw new BitnetError("worker", "no WebAssembly build of the engine runs in this browser");
}

/** The threads build in use and its pool's size (a pool is built once per worker). */
let pool: { variant: Variant; threads: number; workers: Worker[] } | null = null;

/**
 * Instantiates a `-threads` build and starts its pool: `threads` workers that each
 * instantiate the same module on the same shared memory and become one of rayon's
 * threads (pool-thread.ts). While the engine computes, this worker waits for them.
 */
async function startThreads(variant: Variant, threads: number) {
  if (pool) {
    if (pool.variant !== variant) throw new BitnetError("worker", `this worker already runs the ${pool.variant} build`);
    return;
  }
  const glue = builds[variant].glue as unknown as ThreadsGlue;
  const res = await fetch(builds[variant].wasm);
  if (!res.ok) throw new BitnetError("worker", `cannot fetch the ${variant} build: HTTP ${res.status}`);
  const module = await WebAssembly.compile(await res.arrayBuffer());
  const exports = await glue.default({ module_or_path: module });
  const memory = exports.memory as WebAssembly.Memory;
  const workers = Array.from(
    { length: threads },
    (_, i) =>
      new Worker(new URL("./pool-thread.js", import.meta.url), { type: "module", name: `bitnet-web pool ${i}` }),
  );
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((ok, fail) => {
            w.onmessage = () => ok();
            w.onerror = (e) => fail(new BitnetError("worker", `a pool thread did not start: ${e.message}`));
            w.postMessage({ variant, module, memory });
          }),
      ),
    );
    // Returns once every thread runs.
    glue.buildThreadPool(threads);
  } catch (e) {
    for (const w of workers) w.terminate();
    throw e;
  }
  pool = { variant, threads, workers };
}

interface AdapterLike {
  info?: { isFallbackAdapter?: boolean; architecture?: string; vendor?: string; description?: string };
  isFallbackAdapter?: boolean;
}

/** The browser's WebGPU adapter, if any: whether it is software (SwiftShader) and its
 * name as people know it ("SwiftShader", "Apple M2", "nvidia ampere"). */
async function findAdapter(): Promise<{ software: boolean; name: string } | null> {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<AdapterLike | null> } }).gpu;
  const a = await gpu?.requestAdapter().catch(() => null);
  if (!a) return null;
  const info = a.info;
  return {
    software: !!(info?.isFallbackAdapter || a.isFallbackAdapter || info?.architecture === "swiftshader"),
    name: info?.description || [info?.vendor, info?.architecture].filter(Boolean).join(" ") || "GPU",
  };
}

async function load(req: LoadRequest & { id: number }): Promise<LoadResult> {
  const start = performance.now();
  engine?.free();
  engine = null;
  gpuActive = false;
  let gpuError: LoadResult["gpuError"];
  // For `auto`, a software adapter does not count: WASM is faster than a GPU emulated
  // on the CPU.
  const adapter = req.device === "wasm" ? null : await findAdapter();
  const wantGpu =
    req.device === "webgpu" || (req.device === "auto" && req.wasmVariant === "auto" && !!adapter && !adapter.software);
  if (req.device === "webgpu" && !adapter) {
    throw new BitnetError(
      "unsupported-device",
      "WebGPU is not available in this browser (no adapter); use device: 'wasm' or 'auto'",
    );
  }
  const variant = await pickBuild(wantGpu ? "webgpu" : req.wasmVariant, req.threads);
  const glue = builds[variant].glue;
  backend = variant === "webgpu" ? "wasm-simd128" : `wasm-${variant}`;
  let e: InstanceType<Glue["Engine"]> | null = null;
  let info: unknown;
  // After the last byte: building the model, then done.
  const finalPhase = (phase: "parse" | "ready", bytes: number) =>
    post({
      id: req.id,
      kind: "progress",
      progress: {
        phase,
        loaded: bytes,
        total: bytes,
        rate: 0,
        eta: 0,
        part: req.parts.length - 1,
        parts: req.parts.length,
      },
    });
  try {
    const streamed = await streamModel(
      req.parts,
      {
        begin(part, bytes) {
          if (part === 0)
            e = new glue.Engine({
              nCtx: req.nCtx,
              expectedBytes: bytes ?? undefined,
              head: req.head,
              chatTemplate: req.chatTemplate,
              preTokenizer: req.preTokenizer,
              memoryLimit: req.memoryLimit,
            });
          else e!.nextPart(bytes ?? undefined);
        },
        push(chunk) {
          e!.push(chunk);
        },
        reset() {
          (e as InstanceType<Glue["Engine"]> | null)?.free();
          e = null;
        },
      },
      {
        cache: req.cache,
        newHasher: () => new glue.Sha256(),
        sha256: req.sha256,
        rangeChunkBytes: req.rangeChunkBytes,
        retries: req.retries,
        onProgress: (progress) => post({ id: req.id, kind: "progress", progress }),
        accept: (bytes) => {
          finalPhase("parse", bytes);
          info = e!.finish();
        },
      },
    );
    engine = e;
    e = null;
    if (wantGpu) {
      try {
        await (engine as unknown as GpuEngine).useGpu();
        backend = `webgpu (${adapter?.name ?? "GPU"})`;
        gpuActive = true;
      } catch (err) {
        if (req.device === "webgpu") throw err;
        gpuError = toPlain(err);
      }
    }
    finalPhase("ready", streamed.bytes);
    return {
      info: info as LoadResult["info"],
      source: streamed.source,
      backend,
      threads: variant.endsWith("-threads") ? pool!.threads : 1,
      gpuError,
      cacheError: streamed.cacheError,
      loadMs: performance.now() - start,
      bytes: streamed.bytes,
    };
  } finally {
    (e as InstanceType<Glue["Engine"]> | null)?.free();
  }
}

type Step =
  | { type: "prefill"; done: number; total: number }
  | { type: "token"; id: number; text: string }
  | { type: "done"; text: string; completion: EngineCompletion };

/** Runs the started generation step by step, streaming to the page. */
async function generate(id: number): Promise<EngineCompletion> {
  const eng = live();
  for (;;) {
    if (aborted.has(id)) return eng.abortGeneration() as EngineCompletion;
    let step: Step;
    try {
      step = (gpuActive ? await (eng as unknown as GpuEngine).stepAsync() : eng.step()) as Step;
    } catch (err) {
      if (!gpuActive || toPlain(err).kind !== "gpu") throw err;
      // The GPU is gone (or failing): refill the KV cache on the CPU and go on from
      // the same point of the same generation.
      gpuActive = false;
      backend = `wasm-simd128`;
      (eng as unknown as GpuEngine).fallbackToCpu();
      post({ id, kind: "device-lost", backend, message: toPlain(err).message });
      continue;
    }
    if (step.type === "prefill") post({ id, kind: "prefill", done: step.done, total: step.total });
    else if (step.type === "token") {
      if (step.text) post({ id, kind: "token", text: step.text, token: step.id });
    } else {
      if (step.text) post({ id, kind: "token", text: step.text, token: step.completion.tokens.at(-1) ?? 0 });
      return step.completion;
    }
    await yieldToEvents();
  }
}

/** A macrotask turn (no 4 ms timer clamp), so queued messages such as an abort run. */
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => resolve();
    ch.port2.postMessage(null);
  });
}
