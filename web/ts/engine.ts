/** The page side: `CreateEngine` starts the worker and returns a proxy with an
 * OpenAI-style chat API. */
import { BitnetError, fromPlain } from "./errors.js";
import type {
  EngineCompletion,
  EngineGenerateOptions,
  PoolThreadReply,
  PoolThreadStart,
  Reply,
  Request,
} from "./protocol.js";
import type {
  Backend,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessage,
  CreateEngineOptions,
  DeviceLostEvent,
  EngineStats,
  FinishReason,
  LoadProgress,
  LoadResult,
  ModelInfo,
  ModelPart,
  Usage,
} from "./types.js";

type Pending = {
  resolve: (v: unknown) => void;
  reject: (e: BitnetError) => void;
  onEvent?: (r: Reply) => void;
};

// Request ids are unique per worker; the distributive Omit keeps each op's fields.
type Body<R> = R extends unknown ? Omit<R, "id"> : never;

class WorkerRpc {
  private next = 1;
  private pending = new Map<number, Pending>();
  /** The worker trapped (a panic, memory exhausted) or died: it cannot serve again. */
  dead = false;

  /** The pool threads this page started for the engine's worker, by pool. */
  private pools = new Map<number, Worker[]>();

  constructor(private worker: Worker) {
    worker.onmessage = (e: MessageEvent<Reply>) => {
      const r = e.data;
      if (r.kind === "start-pool") return this.startPool(r.pool, r.threads, r.start);
      if (r.kind === "stop-pool") return this.stopPool(r.pool);
      if (r.kind === "error" && r.error.kind === "panic") this.dead = true;
      const p = this.pending.get(r.id);
      if (!p) return;
      if (r.kind === "result") {
        this.pending.delete(r.id);
        p.resolve(r.value);
      } else if (r.kind === "error") {
        this.pending.delete(r.id);
        p.reject(fromPlain(r.error));
      } else p.onEvent?.(r);
    };
    worker.onerror = (e) => {
      this.dead = true;
      this.failAll(
        new BitnetError(
          "worker",
          e.message
            ? `the engine's worker failed: ${e.message}`
            : "the engine's worker could not start: its script did not load (offline without the app's service worker, or blocked)",
        ),
      );
    };
  }

  call<T>(body: Body<Request>, onEvent?: (r: Reply) => void): { id: number; done: Promise<T> } {
    const id = this.next++;
    const done = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onEvent });
    });
    this.worker.postMessage({ ...body, id } as Request);
    return { id, done };
  }

  send(body: Body<Request>) {
    this.worker.postMessage({ ...body, id: 0 } as Request);
  }

  /** Ids of the requests not answered yet. */
  inFlight(): number[] {
    return [...this.pending.keys()];
  }

  failAll(err: BitnetError) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  terminate() {
    this.worker.terminate();
    for (const id of [...this.pools.keys()]) this.stopPool(id);
    this.failAll(new BitnetError("unloaded", "the engine was unloaded"));
  }

  /** Starts a pool's threads here, where `new Worker` never blocks (builds.ts `PoolHost`),
   * sends each the engine worker's start message and passes their answers back. */
  private startPool(pool: number, threads: number, start: PoolThreadStart) {
    const answer = (reply: PoolThreadReply) =>
      this.worker.postMessage({ op: "pool-thread", id: 0, pool, reply } satisfies Request);
    const workers = Array.from({ length: threads }, (_, i) => {
      const w = new Worker(new URL("./pool-thread.js", import.meta.url), {
        type: "module",
        name: `bitnet-web pool ${i}`,
      });
      w.onmessage = ({ data }: MessageEvent<PoolThreadReply>) => answer(data);
      w.onerror = (e) => answer({ ok: false, why: e.message || "its script did not load" });
      w.postMessage(start);
      return w;
    });
    this.pools.set(pool, workers);
  }

  private stopPool(pool: number) {
    for (const w of this.pools.get(pool) ?? []) w.terminate();
    this.pools.delete(pool);
  }
}

const FINISH: Record<EngineCompletion["finish_reason"], FinishReason> = {
  stop: "stop",
  length: "length",
  context_full: "context_full",
  loop: "loop",
  aborted: "abort",
};

function usageOf(u: EngineCompletion["usage"]): Usage {
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.prompt_tokens + u.completion_tokens,
    cached_tokens: u.cached_tokens,
    prefill_tokens_per_s: u.prefill_tps,
    decode_tokens_per_s: u.decode_tps,
    time_to_first_token_ms: u.ttft_ms,
    prefill_ms: u.prefill_ms,
    decode_ms: u.decode_ms,
  };
}

function engineOptions(r: ChatCompletionRequest, prefillChunk: number): EngineGenerateOptions {
  return {
    max_tokens: r.max_tokens,
    temperature: r.temperature,
    top_p: r.top_p,
    top_k: r.top_k,
    min_p: r.min_p,
    // As in OpenAI's API, no penalty unless asked for (so temperature 0 is plain argmax).
    repetition_penalty: r.repetition_penalty ?? 1,
    repeat_window: r.repeat_window,
    seed: r.seed,
    stop: r.stop === undefined ? undefined : Array.isArray(r.stop) ? r.stop : [r.stop],
    loop_guard: r.loop_guard,
    prefill_chunk: prefillChunk,
  };
}

/** A model running in a worker. */
export class Engine {
  /** The model's shape and the engine's memory. */
  readonly info: ModelInfo;
  /** What runs the model; changes to WASM when the GPU is lost (see `onDeviceLost`). */
  backend: Backend;
  readonly load: LoadResult;
  private modelName: string;

  /** OpenAI-style chat: `engine.chat.completions.create({ messages, stream, ... })`. */
  readonly chat: {
    completions: {
      create(r: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(r: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
      create(r: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
    };
  };

  private replacing: Promise<void> | null = null;
  private unloaded = false;

  /** @internal */
  constructor(
    private rpc: WorkerRpc,
    /** The request that loaded the model, sent again to a replacement worker. */
    private loadRequest: Body<Request>,
    load: LoadResult,
    name: string,
    private prefillChunk: number,
    private onDeviceLost?: (e: DeviceLostEvent) => void,
  ) {
    this.load = load;
    this.info = load.info;
    this.backend = load.backend;
    this.modelName = name;
    const create = (r: ChatCompletionRequest) => (r.stream ? this.stream(r) : this.complete(r));
    this.chat = { completions: { create: create as Engine["chat"]["completions"]["create"] } };
  }

  /** The worker to send to. After one trapped, the request that found it dead got a
   * `panic` error; the next one gets a fresh worker with the model loaded again (from
   * the offline copy when there is one), so the page goes on without a reload. */
  private async worker(): Promise<WorkerRpc> {
    if (this.rpc.dead && !this.unloaded) {
      this.replacing ??= this.replaceWorker().finally(() => (this.replacing = null));
    }
    if (this.replacing) await this.replacing;
    return this.rpc;
  }

  private async replaceWorker() {
    this.rpc.terminate();
    const rpc = startWorker();
    try {
      const load = await rpc.call<LoadResult>(this.loadRequest).done;
      this.rpc = rpc;
      this.backend = load.backend;
    } catch (e) {
      rpc.terminate();
      throw e;
    }
  }

  private async call<T>(body: Body<Request>): Promise<T> {
    return (await this.worker()).call<T>(body).done;
  }

  private deviceLost = (ev: Reply) => {
    if (ev.kind !== "device-lost") return;
    this.backend = ev.backend;
    this.onDeviceLost?.({ backend: ev.backend, message: ev.message });
  };

  /** Runs one generation request in the worker: the chat template (`chat`) or a raw
   * prompt (`complete`), with prompt progress, device-loss events and abort wired up. */
  private async generate(
    body: Body<Request>,
    r: Pick<ChatCompletionRequest, "signal" | "onPrefill">,
    onEvent?: (r: Reply) => void,
  ): Promise<EngineCompletion> {
    const rpc = await this.worker();
    const call = rpc.call<EngineCompletion>(body, (ev) => {
      this.deviceLost(ev);
      if (ev.kind === "prefill") r.onPrefill?.(ev.done, ev.total);
      onEvent?.(ev);
    });
    const abort = () => rpc.send({ op: "abort", target: call.id });
    if (r.signal?.aborted) abort();
    r.signal?.addEventListener("abort", abort, { once: true });
    call.done.finally(() => r.signal?.removeEventListener("abort", abort)).catch(() => {});
    return call.done;
  }

  private start(r: ChatCompletionRequest, onEvent?: (r: Reply) => void) {
    return this.generate(
      { op: "chat", messages: r.messages, options: engineOptions(r, this.prefillChunk) },
      r,
      onEvent,
    );
  }

  private async complete(r: ChatCompletionRequest): Promise<ChatCompletion> {
    const c = await this.start(r);
    return {
      id: `chatcmpl-${crypto.randomUUID()}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: this.modelName,
      choices: [{ index: 0, message: { role: "assistant", content: c.text }, finish_reason: FINISH[c.finish_reason] }],
      usage: usageOf(c.usage),
      prompt_ids: c.prompt_ids,
    };
  }

  private async stream(r: ChatCompletionRequest): Promise<AsyncIterable<ChatCompletionChunk>> {
    const id = `chatcmpl-${crypto.randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta: ChatCompletionChunk["choices"][0]["delta"], finish: FinishReason | null, usage?: Usage) => ({
      id,
      object: "chat.completion.chunk" as const,
      created,
      model: this.modelName,
      choices: [{ index: 0 as const, delta, finish_reason: finish }],
      ...(usage ? { usage } : {}),
    });
    // Chunks wait here until the consumer pulls them.
    const buffered: ChatCompletionChunk[] = [chunk({ role: "assistant", content: "" }, null)];
    let wake: (() => void) | null = null;
    let ended = false;
    let failure: BitnetError | null = null;
    const notify = () => {
      wake?.();
      wake = null;
    };
    // Leaving the `for await` early (break, return, a throw) aborts the generation.
    const stop = new AbortController();
    const forward = () => stop.abort();
    if (r.signal?.aborted) stop.abort();
    r.signal?.addEventListener("abort", forward, { once: true });
    this.start({ ...r, signal: stop.signal }, (ev) => {
      if (ev.kind === "token") {
        buffered.push(chunk({ content: ev.text }, null));
        notify();
      }
    })
      .then(
        (c) => {
          buffered.push(chunk({}, FINISH[c.finish_reason], usageOf(c.usage)));
          ended = true;
          notify();
        },
        (e: BitnetError) => {
          failure = e;
          ended = true;
          notify();
        },
      )
      .finally(() => r.signal?.removeEventListener("abort", forward));
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            while (buffered.length) yield buffered.shift()!;
            if (ended) {
              if (failure) throw failure;
              if (!buffered.length) return;
              continue;
            }
            await new Promise<void>((res) => (wake = res));
          }
        } finally {
          if (!ended) stop.abort();
        }
      },
    };
  }

  /** Raw completion of a text prompt (no chat template); `onToken` sees each piece. */
  async completion(
    prompt: string,
    options: Omit<ChatCompletionRequest, "messages" | "stream"> & { onToken?: (text: string) => void } = {},
  ): Promise<{ text: string; finish_reason: FinishReason; usage: Usage; tokens: number[] }> {
    const c = await this.generate(
      { op: "complete", prompt, options: engineOptions({ messages: [], ...options }, this.prefillChunk) },
      options,
      (ev) => {
        if (ev.kind === "token") options.onToken?.(ev.text);
      },
    );
    return { text: c.text, finish_reason: FINISH[c.finish_reason], usage: usageOf(c.usage), tokens: c.tokens };
  }

  /** Token ids of `text` (BOS added per the model; `special` parses special-token text). */
  tokenize(text: string, options: { special?: boolean } = {}): Promise<number[]> {
    return this.call<number[]>({ op: "tokenize", text, special: options.special ?? false });
  }

  detokenize(ids: number[]): Promise<string> {
    return this.call<string>({ op: "detokenize", ids });
  }

  /** Forgets the conversation (and the KV cache). */
  resetChat(): Promise<void> {
    return this.call<void>({ op: "resetChat" });
  }

  stats(): Promise<EngineStats> {
    return this.call<EngineStats>({ op: "stats" });
  }

  /** Test hook: destroys the WebGPU device as a GPU reset would. Resolves with whether
   * a device was in use; the next request then continues on WASM. */
  loseGpuForTesting(): Promise<boolean> {
    return this.call<boolean>({ op: "loseGpu" });
  }

  /** Test hook: a panic inside the engine, as a bug would raise. Rejects with `panic`;
   * the next request runs in a fresh worker. */
  panicForTesting(): Promise<void> {
    return this.call<void>({ op: "panic" });
  }

  /** Frees the model and stops the worker; the engine cannot be used afterwards. A
   * generation still running (or queued) is aborted first. */
  async unload(): Promise<void> {
    this.unloaded = true;
    await this.replacing?.catch(() => {});
    for (const target of this.rpc.inFlight()) this.rpc.send({ op: "abort", target });
    await this.rpc.call<void>({ op: "unload" }).done.catch(() => {});
    this.rpc.terminate();
  }
}

function partsOf(model: CreateEngineOptions["model"]): ModelPart[] {
  const parts = Array.isArray(model) ? model : [model];
  if (parts.length === 0) throw new BitnetError("invalid-argument", "no model was given");
  return parts.map((p) => (p instanceof Blob ? p : String(p)));
}

function nameOf(p: ModelPart): string {
  if (p instanceof File) return p.name;
  if (p instanceof Blob) return "local-model.gguf";
  return String(p).split("/").pop()?.split("?")[0] || String(p);
}

function startWorker(): WorkerRpc {
  return new WorkerRpc(new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "bitnet-web" }));
}

/** Starts a worker, streams the model into it, and resolves when it can answer. */
export async function CreateEngine(opts: CreateEngineOptions): Promise<Engine> {
  if (opts.signal?.aborted) throw new BitnetError("aborted", "the load was aborted");
  const parts = partsOf(opts.model);
  const device = opts.device ?? "auto";
  const sha = opts.sha256 === undefined ? [] : Array.isArray(opts.sha256) ? opts.sha256 : [opts.sha256];
  const rpc = startWorker();
  const request: Body<Request> = {
    op: "load",
    parts: parts.map((p) => (p instanceof Blob ? p : new URL(p, location.href).href)),
    nCtx: opts.nCtx,
    head: opts.head,
    kvCache: opts.kvCache,
    chatTemplate: opts.chatTemplate,
    preTokenizer: opts.preTokenizer,
    memoryLimit: opts.memoryLimit,
    cache: opts.cache ?? true,
    sha256: parts.map((_, i) => sha[i]),
    rangeChunkBytes: opts.rangeChunkBytes ?? 64 << 20,
    retries: opts.retries ?? 5,
    wasmVariant: opts.wasmVariant ?? "auto",
    measureSoftwareGpu: opts.measureSoftwareGpu ?? false,
    // Decode reads every weight once per token: past a few cores, memory is the limit.
    threads: Math.max(1, Math.floor(opts.threads ?? Math.min(navigator.hardwareConcurrency || 1, 8))),
    threadsAuto: opts.threads === undefined,
    device,
    testOnlyBreakSelfTestOf: opts.testOnlyBreakSelfTestOf,
  };
  const call = rpc.call<LoadResult>(request, (r) => {
    if (r.kind === "progress") opts.onProgress?.(r.progress as LoadProgress);
  });
  const onAbort = () => rpc.terminate();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const load = await call.done;
    return new Engine(rpc, request, load, nameOf(parts[0]), opts.prefillChunk ?? 32, opts.onDeviceLost);
  } catch (e) {
    rpc.terminate();
    if (opts.signal?.aborted) throw new BitnetError("aborted", "the load was aborted");
    throw e;
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

export type { ChatMessage };
