import type { ErrorKind } from "./errors.js";

/** A model: a URL, a local `File`/`Blob`, or the parts of a `gguf-split` model in order. */
export type ModelPart = string | URL | Blob;
export type ModelSource = ModelPart | ModelPart[];

export interface CreateEngineOptions {
  model: ModelSource;
  /** `auto` tries WebGPU on a hardware adapter and keeps it when it passes its self-test
   * and, after a short warm-up, decodes faster than WASM; else WASM. `load.device.reason`
   * says what was chosen and why. */
  device?: "auto" | "webgpu" | "wasm";
  /** With `auto`, time a software adapter (SwiftShader, a fallback adapter) against WASM
   * too, instead of passing it over as slower. */
  measureSoftwareGpu?: boolean;
  onProgress?: (p: LoadProgress) => void;
  /** The GPU went away during a request; the engine goes on with WASM from here on. */
  onDeviceLost?: (e: DeviceLostEvent) => void;
  /** KV cache size in tokens (default 2048, at most the model's context length). */
  nCtx?: number;
  /** Bytes the engine may use in all (default 4 GiB, what WebAssembly addresses). A
   * model whose tensors (all parts together) need more than this less 512 MiB, or a KV
   * cache that does not fit beside it, is refused up front with `out-of-memory` instead
   * of crashing the tab; a phone app may set about 1.4e9 (iOS ends tabs near 1.5 GB). */
  memoryLimit?: number;
  /** `int8`: an int8 LM head built while the file streams in, in place of the file's
   * (faster, smaller, slightly different logits). `int8-exact`: the int8 head scores every
   * token, then each step's 64 best are scored again from the file's own float rows, read
   * from the offline copy as they are needed: greedy and top-k sampling see the file's
   * logits, in the int8 head's memory. It needs that copy (a URL model in one file, with
   * `cache` on) and runs on the CPU; the copy stays locked while the model is loaded.
   * `int4-exact`: the same over a 4-bit copy, half the int8 head's memory (the smallest
   * configuration; 2B4T's head is 0.16 GB instead of 0.33). */
  head?: "file" | "int8" | "int8-exact" | "int4-exact";
  /** How the KV cache keeps keys and values: `f32` (default, the reference's arithmetic)
   * or `f16` (half the memory: 157 MB instead of 315 MB for 2B4T at 2048 tokens; logits
   * as close to the reference as bitnet.cpp's own f16 cache). The CPU backends only:
   * WebGPU keeps its cache in f32. */
  kvCache?: "f32" | "f16";
  /** Keep downloaded models in the origin's private file system (default true). */
  cache?: boolean;
  /** Expected SHA-256 (hex) of the file, or of each part; checked before the copy is kept. */
  sha256?: string | string[];
  /** Size of each HTTP Range request (default 64 MiB). */
  rangeChunkBytes?: number;
  /** Retries of a dropped download before giving up (default 5). */
  retries?: number;
  /** Which WebAssembly build to run (default: relaxed SIMD where it works, else SIMD128;
   * their `-threads` builds when `threads` > 1 and the page is cross-origin isolated). */
  wasmVariant?: WasmVariant;
  /** Threads for the CPU kernels (default: the device's cores, at most 8, kept only when
   * a few decode steps timed at load ran faster on them than on one thread). More than one
   * needs a cross-origin-isolated page (`Cross-Origin-Opener-Policy: same-origin` and
   * `Cross-Origin-Embedder-Policy: require-corp`, or `credentialless` outside WebKit); elsewhere the
   * engine runs on one thread. */
  threads?: number;
  /** For tests of the build choice only: this build's kernel self-test sees a wrong
   * result (what an engine with other relaxed-SIMD semantics gives), so `auto` must pass
   * it over. */
  testOnlyBreakSelfTestOf?: WasmBuild;
  /** Tokens per prefill step; smaller reacts faster to abort (default 32). */
  prefillChunk?: number;
  /** How a conversation becomes the prompt: `auto` (default: the file's template, except
   * that bitnet.cpp's converter template, which drops system messages and ends every
   * prompt with the end-of-text token, is replaced by the 2B4T format the model was
   * trained with; a file with neither a template nor `<|eot_id|>` is a base model and gets
   * `text`), `gguf` (the file's template as written), `bitnet` (the 2B4T format), `text`
   * (each user message is a text the model continues; system messages are left out), or
   * Jinja source. `LoadResult.info.chatFormat` says what was chosen and why. */
  chatTemplate?: "auto" | "gguf" | "bitnet" | "text" | (string & {});
  /** `auto` (default: the file's; Llama-3's for a Llama-3 vocabulary when the file names
   * none, as the official 2B4T file does), or a llama.cpp pre-tokenizer name: `default`
   * tokenizes as bitnet.cpp does with that file. */
  preTokenizer?: "auto" | "default" | "llama-bpe" | (string & {});
  signal?: AbortSignal;
}

export type WasmVariant = "auto" | "relaxed" | "simd128" | "scalar" | "relaxed-threads" | "simd128-threads";

/** A WebAssembly build of the engine: the CPU builds, and `webgpu` (the GPU backend, with
 * SIMD128 kernels for its CPU path). */
export type WasmBuild = Exclude<WasmVariant, "auto"> | "webgpu";

/** What runs the model. */
export interface Backend {
  /** `wasm`: the CPU kernels of a WebAssembly build; `webgpu`: the GPU. */
  kind: "wasm" | "webgpu";
  /** The build loaded. */
  build: WasmBuild;
  /** The GPU adapter's name ("Apple M2", "SwiftShader"), when `kind` is `webgpu`. */
  adapter?: string;
  /** Threads the CPU kernels run on. */
  threads: number;
}

export interface DeviceLostEvent {
  /** The backend that runs now (the CPU kernels of the same build). */
  backend: Backend;
  message: string;
}

export interface LoadProgress {
  /** `download`: bytes from the network; `cache`: from the local copy; `file`: a local file;
   * `parse`: building the model after the last byte; `retry`: the connection dropped and
   * the download resumes; `ready`: done. */
  phase: "download" | "cache" | "file" | "retry" | "parse" | "ready";
  /** Bytes received so far, all parts together. */
  loaded: number;
  /** All parts' bytes once known. */
  total: number | null;
  /** Bytes per second over the last moments. */
  rate: number;
  /** Seconds left at the current rate, when known. */
  eta: number | null;
  part: number;
  parts: number;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface SamplingOptions {
  /** 0 means greedy. Values no sampler can mean (a negative or NaN temperature, `top_p`
   * outside (0, 1], `min_p` outside [0, 1], `repetition_penalty` ≤ 0, `max_tokens` < 1, an
   * empty stop string) are `invalid-argument` errors that name the option. */
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  /** Tokens back that `repetition_penalty` looks at (default 64). */
  repeat_window?: number;
  max_tokens?: number;
  stop?: string | string[];
  seed?: number;
  /** Ends a reply whose newest tokens keep repeating one phrase (`finish_reason: "loop"`);
   * on by default, `false` turns it off. */
  loop_guard?: boolean;
}

export interface ChatCompletionRequest extends SamplingOptions {
  messages: ChatMessage[];
  stream?: boolean;
  signal?: AbortSignal;
  /** Prompt progress (`done` of `total` new prompt tokens), for long prompts on slow devices. */
  onPrefill?: (done: number, total: number) => void;
}

/** `abort`: stopped by the caller; `context_full`: the KV cache is full; `loop`: the
 * output kept repeating itself. */
export type FinishReason = "stop" | "length" | "abort" | "context_full" | "loop";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens already in the KV cache (earlier turns), not computed again. */
  cached_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  time_to_first_token_ms: number;
  prefill_ms: number;
  decode_ms: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string }; finish_reason: FinishReason }[];
  usage: Usage;
  /** Every prompt token the model was fed for this request (cached ones too): the
   * rendered chat template, tokenized. */
  prompt_ids: number[];
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: 0;
    delta: { role?: "assistant"; content?: string };
    finish_reason: FinishReason | null;
  }[];
  /** On the last chunk. */
  usage?: Usage;
}

export interface ModelInfo {
  architecture: string;
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  nCtx: number;
  weightsBytes: number;
  kvCacheBytes: number;
  /** How the CPU backend's KV cache keeps keys and values (`kvCache` option). */
  kvCache: "f32" | "f16";
  kernels: string;
  /** The LM head in use: the file's, the int8 copy (`head: "int8"`), or the int8 copy
   * or the int4 copy with its best candidates scored again from the file (`head:
   * "int8-exact"`, `"int4-exact"`). */
  head: "file" | "int8" | "int8-exact" | "int4-exact";
  /** The chat format in use and why it was chosen. */
  chatFormat: { format: "bitnet-2b4t" | "gguf" | "jinja"; reason: string };
  /** The pre-tokenizer in use and why. */
  preTokenizer: { name: string; reason: string };
  bosToken: number | null;
  eosToken: number | null;
  eotToken: number | null;
  /** Every token that ends a reply (EOS, EOT and llama.cpp's other end-of-generation tokens). */
  stopTokens: number[];
}

export interface LoadResult {
  info: ModelInfo;
  /** Where the bytes came from (the first part's source when parts differ). */
  source: "network" | "cache" | "file";
  /** What runs the model (`engine.backend` follows it after a GPU loss). */
  backend: Backend;
  /** Threads the CPU kernels run on (1 unless a `-threads` build runs). */
  threads: number;
  /** Why that many: asked for, no cross-origin isolation, or (with `threads` not given)
   * the decode speeds of one thread and of the pool, timed at load, the faster kept. */
  threadChoice: ThreadChoice;
  /** Why `backend.build` runs; for the GPU, the build its CPU path uses. */
  buildChoice: BuildChoice;
  /** With `device: "auto"`: why WebGPU was not used (no adapter, failed self-test, …). */
  gpuError?: { kind: ErrorKind; message: string };
  /** Why `backend` runs the model; with `auto` and WebGPU tried, the decode speeds that
   * decided it. */
  device: DeviceChoice;
  /** Set when the model loaded but could not be kept offline (e.g. the storage quota). */
  cacheError?: { kind: ErrorKind; message: string };
  loadMs: number;
  bytes: number;
}

/** Why the worker runs the WebAssembly build it runs. */
export interface BuildChoice {
  /** `asked for` (`wasmVariant` named it), `the fastest build`, or `the fastest build
   * that runs here` (faster ones were passed over: see `passedOver`). */
  reason: string;
  /** The builds faster than this one that were not used, fastest first, each with why
   * (a feature the browser's WebAssembly lacks, no cross-origin isolation, a failed
   * kernel self-test, a refused shared memory). */
  passedOver: PassedOver[];
}

export interface PassedOver {
  build: WasmBuild;
  why: string;
}

export interface ThreadChoice {
  reason: string;
  /** Decode tokens/s on one thread and on the pool, when they were timed. */
  oneThreadTokensPerS?: number;
  poolTokensPerS?: number;
}

export interface DeviceChoice {
  reason: string;
  /** Tokens/s of WebGPU and of this WASM build after a warm-up, when they were timed. */
  gpuTokensPerS?: number;
  wasmTokensPerS?: number;
}

export interface EngineStats {
  backend: Backend;
  kernels: string;
  wasmMemoryBytes: number;
  cachedTokens: number;
  lastUsage: Usage | null;
}

export interface CachedModel {
  url: string;
  /** Bytes on disk. */
  bytes: number;
  /** The whole file's size, when known (a partial copy has `bytes < total`). */
  total: number | null;
  complete: boolean;
  savedAt: number;
}
