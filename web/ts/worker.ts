/**
 * The module worker that owns the engine. Requests run one at a time, in order, so two
 * generations never share the KV cache; an abort message is handled at once because
 * every generation yields to the event loop between prefill chunks and tokens.
 */
import { type CpuEngine, type GpuEngine, glueOf, type Pool, type PoolHost, pickBuild, specOf } from "./builds.js";
import { openOfflineCopy } from "./cache.js";
import { streamModel } from "./download.js";
import { BitnetError, toPlain } from "./errors.js";
import type { EngineCompletion, EngineLoadOptions, LoadRequest, PoolThreadReply, Reply, Request } from "./protocol.js";
import type { Backend, DeviceChoice, LoadResult, ThreadChoice } from "./types.js";

/** Decode steps timed per side when choosing the thread count (each side twice). */
const THREAD_TIMING_STEPS = 4;

type Step =
  | { type: "prefill"; done: number; total: number }
  | { type: "token"; id: number; text: string }
  | { type: "done"; text: string; completion: EngineCompletion };

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

/** Why the load runs where it does when no timing decides it (a GPU that is timed, or
 * that fails, gets its reason later). */
function untimedReason(req: LoadRequest, adapter: { software: boolean; name: string } | null): string {
  if (req.device !== "auto") return `device: '${req.device}' was asked for`;
  if (isExactHead(req.head)) return `the '${req.head}' head runs on the CPU`;
  if (!adapter) return "this browser has no WebGPU adapter";
  if (req.wasmVariant !== "auto") return `wasmVariant '${req.wasmVariant}' was asked for`;
  return `the WebGPU adapter (${adapter.name}) is a software renderer, slower than WASM`;
}

/** Why the kernels run on `threads` threads when nothing was timed. */
function untimedThreads(req: LoadRequest, threads: number): string {
  if (threads > 1)
    return threads === req.threads
      ? `${threads} threads were asked for`
      : `${req.threads} threads were asked for; the worker's pool has ${threads}`;
  if (req.threads <= 1) return req.threadsAuto ? "this device has one core" : "one thread was asked for";
  if (self.crossOriginIsolated !== true) return "the page is not cross-origin isolated: no shared memory for threads";
  return "this build runs on one thread";
}

/** A macrotask turn (no 4 ms timer clamp), so queued messages such as an abort run. */
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => resolve();
    ch.port2.postMessage(null);
  });
}

/** The heads that score their best candidates again from the model's offline copy. */
function isExactHead(head: LoadRequest["head"]): head is "int8-exact" | "int4-exact" {
  return head === "int8-exact" || head === "int4-exact";
}

/** The offline copy that an exact head reads its float rows from: the model's one file,
 * just written or read in full. */
async function exactHeadSource(req: LoadRequest) {
  const [part] = req.parts;
  if (req.parts.length !== 1 || part instanceof Blob || !req.cache) {
    throw new BitnetError(
      "invalid-argument",
      `the '${req.head}' head reads the float head from the model's offline copy: load one URL with cache on`,
    );
  }
  try {
    return await openOfflineCopy(String(part));
  } catch (e) {
    throw new BitnetError(
      "io",
      `the '${req.head}' head needs the model's offline copy, which cannot be opened (${String(e)}): ` +
        "the browser may keep no copy (storage full or unavailable), or another tab has it open",
    );
  }
}

/** The CPU path of the webgpu build. */
const GPU_FALLBACK: Backend = { kind: "wasm", build: "webgpu", threads: 1 };

class EngineWorker {
  private engine: CpuEngine | null = null;
  private backend: Backend = { kind: "wasm", build: "scalar", threads: 1 };
  /** Generations run on the GPU (the webgpu build, after `useGpu` succeeded). */
  private gpuActive = false;
  /** Set by a panic: the wasm instance cannot be trusted after one. */
  private crashed: string | null = null;
  private lastConsoleError = "";
  private readonly aborted = new Set<number>();
  private queue: Promise<void> = Promise.resolve();
  /** The threads build's pool (a worker builds at most one). */
  private pool: Pool | null = null;
  private nextPool = 1;
  /** Each pool asked of the page: what to do with its threads' answers. */
  private readonly starting = new Map<number, (r: PoolThreadReply) => void>();
  /** Pool threads come from the page (see `PoolHost`). */
  private readonly poolHost: PoolHost = {
    start: (threads, start) => {
      const id = this.nextPool++;
      const ready = new Promise<void>((ok, fail) => {
        let waiting = threads;
        this.starting.set(id, (r) => {
          if (!r.ok) fail(new BitnetError("worker", `a pool thread did not start: ${r.why}`));
          else if (--waiting === 0) ok();
        });
      });
      this.post({ id: 0, kind: "start-pool", pool: id, threads, start });
      return { id, ready };
    },
    stop: (id) => {
      this.starting.delete(id);
      this.post({ id: 0, kind: "stop-pool", pool: id });
    },
  };

  constructor(
    private readonly post: (r: Reply) => void,
    private readonly log: (...args: unknown[]) => void,
  ) {}

  /** console_error_panic_hook prints a panic's message with console.error: kept so the
   * page gets the message, not just "unreachable". */
  consoleError(args: unknown[]) {
    this.lastConsoleError = args.map(String).join(" ");
  }

  receive(req: Request) {
    if (req.op === "abort") {
      this.aborted.add(req.target);
      return;
    }
    if (req.op === "pool-thread") {
      this.starting.get(req.pool)?.(req.reply);
      return;
    }
    this.queue = this.queue.then(() => this.handle(req));
  }

  private async handle(req: Request): Promise<void> {
    try {
      if (this.crashed && req.op !== "unload") {
        throw new BitnetError(
          "panic",
          `the engine crashed earlier (${this.crashed}); the next request starts a fresh worker`,
        );
      }
      this.post({ id: req.id, kind: "result", value: await this.run(req) });
    } catch (e) {
      let err = toPlain(e);
      if (e instanceof WebAssembly.RuntimeError) {
        this.crashed = this.lastConsoleError || String(e);
        err = { kind: "panic", message: `the engine crashed: ${this.crashed}; the next request starts a fresh worker` };
        this.engine = null;
      }
      this.post({ id: req.id, kind: "error", error: err });
    } finally {
      this.aborted.delete(req.id);
    }
  }

  private async run(req: Request): Promise<unknown> {
    switch (req.op) {
      case "load":
        return this.load(req);
      case "chat":
        this.live().beginChat(req.messages, req.options);
        return this.generate(req.id);
      case "complete":
        this.live().beginComplete(req.prompt, req.options);
        return this.generate(req.id);
      case "tokenize":
        return Array.from(this.live().tokenize(req.text, true, req.special));
      case "detokenize":
        return this.live().detokenize(Uint32Array.from(req.ids));
      case "resetChat":
        this.live().resetChat();
        return null;
      case "stats":
        return { ...this.live().stats(), backend: this.backend };
      case "unload":
        this.engine?.free();
        this.engine = null;
        this.gpuActive = false;
        return null;
      case "panic":
        this.live().panicForTesting();
        return null;
      case "loseGpu":
        return (this.live() as unknown as GpuEngine).loseGpuForTesting?.() ?? false;
      case "abort":
        return null;
    }
  }

  private live(): CpuEngine {
    if (!this.engine) throw new BitnetError("unloaded", "no model is loaded");
    return this.engine;
  }

  private async load(req: LoadRequest & { id: number }): Promise<LoadResult> {
    const start = performance.now();
    this.engine?.free();
    this.engine = null;
    this.gpuActive = false;
    let gpuError: LoadResult["gpuError"];
    const adapter = req.device === "wasm" ? null : await findAdapter();
    // For `auto`, a software adapter is passed over unless asked for: a GPU emulated on
    // the CPU decodes slower than WASM.
    const autoGpu =
      req.device === "auto" &&
      req.wasmVariant === "auto" &&
      !isExactHead(req.head) &&
      !!adapter &&
      (!adapter.software || req.measureSoftwareGpu);
    const wantGpu = req.device === "webgpu" || autoGpu;
    let device: DeviceChoice = { reason: untimedReason(req, adapter) };
    if (req.device === "webgpu" && !adapter) {
      throw new BitnetError(
        "unsupported-device",
        "WebGPU is not available in this browser (no adapter); use device: 'wasm' or 'auto'",
      );
    }
    const picked = await pickBuild(
      wantGpu ? "webgpu" : req.wasmVariant,
      req.threads,
      this.pool,
      this.poolHost,
      this.log,
      req.testOnlyBreakSelfTestOf,
    );
    this.pool = picked.pool;
    const glue = glueOf(picked.build);
    let threads = specOf(picked.build).threads && this.pool ? this.pool.threads : 1;
    let threadChoice: ThreadChoice = { reason: untimedThreads(req, threads) };
    this.backend = { kind: "wasm", build: picked.build, threads };
    let e: CpuEngine | null = null;
    let info: unknown;
    // After the last byte: building the model, then done.
    const finalPhase = (phase: "parse" | "ready", bytes: number) =>
      this.post({
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
                kvCache: req.kvCache,
                chatTemplate: req.chatTemplate,
                preTokenizer: req.preTokenizer,
                memoryLimit: req.memoryLimit,
              } satisfies EngineLoadOptions);
            else e!.nextPart(bytes ?? undefined);
          },
          push(chunk) {
            e!.push(chunk);
          },
          reset() {
            (e as CpuEngine | null)?.free();
            e = null;
          },
        },
        {
          cache: req.cache,
          newHasher: () => new glue.Sha256(),
          sha256: req.sha256,
          rangeChunkBytes: req.rangeChunkBytes,
          retries: req.retries,
          onProgress: (progress) => this.post({ id: req.id, kind: "progress", progress }),
          accept: async (bytes) => {
            finalPhase("parse", bytes);
            if (isExactHead(req.head)) e!.keepOfflineCopy(await exactHeadSource(req), bytes);
            info = e!.finish();
          },
        },
      );
      this.engine = e;
      e = null;
      if (wantGpu) {
        const gpuEngine = this.engine as unknown as GpuEngine;
        try {
          await gpuEngine.useGpu();
          this.backend = { kind: "webgpu", build: "webgpu", adapter: adapter?.name ?? "GPU", threads: 1 };
          this.gpuActive = true;
        } catch (err) {
          if (req.device === "webgpu") throw err;
          gpuError = toPlain(err);
          device = { reason: `WebGPU failed: ${gpuError.message}` };
        }
        if (this.gpuActive && autoGpu)
          device = this.keepFaster(gpuEngine, adapter?.name ?? "GPU", await gpuEngine.decodeRates(8));
      }
      if (!this.gpuActive && req.threadsAuto && threads > 1) {
        threadChoice = this.keepFasterThreads(this.engine!, threads);
        threads = this.backend.threads;
      }
      finalPhase("ready", streamed.bytes);
      return {
        info: info as LoadResult["info"],
        source: streamed.source,
        backend: this.backend,
        threads,
        threadChoice,
        buildChoice: picked.choice,
        gpuError,
        device,
        cacheError: streamed.cacheError,
        loadMs: performance.now() - start,
        bytes: streamed.bytes,
      };
    } finally {
      (e as CpuEngine | null)?.free();
    }
  }

  /** `auto`'s choice after timing both: the GPU stays only when it decodes faster. */
  private keepFaster(eng: GpuEngine, adapter: string, rates: { gpu: number; wasm: number }): DeviceChoice {
    const speeds = `WebGPU (${adapter}) decoded ${rates.gpu.toFixed(1)} tokens/s, WASM ${rates.wasm.toFixed(1)}`;
    const timed = { gpuTokensPerS: rates.gpu, wasmTokensPerS: rates.wasm };
    if (rates.gpu > rates.wasm) return { reason: `${speeds}: WebGPU is faster`, ...timed };
    eng.fallbackToCpu();
    this.gpuActive = false;
    this.backend = GPU_FALLBACK;
    return { reason: `${speeds}: WASM is faster`, ...timed };
  }

  /** With `threads` not given: a few timed decode steps on one thread and on the pool;
   * one thread stays when the pool is no faster. */
  private keepFasterThreads(eng: CpuEngine, threads: number): ThreadChoice {
    const r = eng.threadRates(THREAD_TIMING_STEPS, threads) as { one: number; pool: number };
    const speeds = `${threads} threads decoded ${r.pool.toFixed(1)} tokens/s, one thread ${r.one.toFixed(1)}`;
    const timed = { oneThreadTokensPerS: r.one, poolTokensPerS: r.pool };
    if (r.pool > r.one) return { reason: `${speeds}: ${threads} threads are faster`, ...timed };
    eng.setThreads(1);
    this.backend = { ...this.backend, threads: 1 } as Backend;
    return { reason: `${speeds}: one thread is faster`, ...timed };
  }

  /** Runs the started generation step by step, streaming to the page. */
  private async generate(id: number): Promise<EngineCompletion> {
    const eng = this.live();
    for (;;) {
      if (this.aborted.has(id)) return eng.abortGeneration() as EngineCompletion;
      let step: Step;
      try {
        step = (this.gpuActive ? await (eng as unknown as GpuEngine).stepAsync() : eng.step()) as Step;
      } catch (err) {
        if (!this.gpuActive || toPlain(err).kind !== "gpu") throw err;
        // The GPU is gone (or failing): refill the KV cache on the CPU and go on from
        // the same point of the same generation.
        this.gpuActive = false;
        this.backend = GPU_FALLBACK;
        (eng as unknown as GpuEngine).fallbackToCpu();
        this.post({ id, kind: "device-lost", backend: this.backend, message: toPlain(err).message });
        continue;
      }
      if (step.type === "prefill") this.post({ id, kind: "prefill", done: step.done, total: step.total });
      else if (step.type === "token") {
        if (step.text) this.post({ id, kind: "token", text: step.text, token: step.id });
      } else {
        if (step.text) this.post({ id, kind: "token", text: step.text, token: step.completion.tokens.at(-1) ?? 0 });
        return step.completion;
      }
      await yieldToEvents();
    }
  }
}

const consoleError = console.error.bind(console);
const worker = new EngineWorker((r) => (self as unknown as Worker).postMessage(r), consoleError);
console.error = (...args: unknown[]) => {
  worker.consoleError(args);
  consoleError(...args);
};
self.onmessage = (e: MessageEvent<Request>) => worker.receive(e.data);
