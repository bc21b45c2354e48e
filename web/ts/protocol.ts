/** Messages between the page's `Engine` proxy and the worker that runs the engine. */
import type { PlainError } from "./errors.js";
import type { Backend, ChatMessage, LoadProgress, LoadResult, ModelPart, WasmBuild, WasmVariant } from "./types.js";

export interface LoadRequest {
  op: "load";
  parts: ModelPart[];
  nCtx?: number;
  head?: "file" | "int8" | "int8-exact" | "int4-exact";
  kvCache?: "f32" | "f16";
  chatTemplate?: string;
  preTokenizer?: string;
  memoryLimit?: number;
  cache: boolean;
  sha256: (string | undefined)[];
  rangeChunkBytes: number;
  retries: number;
  wasmVariant: WasmVariant;
  threads: number;
  /** `threads` was not given: time one thread against the pool and keep the faster. */
  threadsAuto: boolean;
  device: "auto" | "webgpu" | "wasm";
  measureSoftwareGpu: boolean;
  testOnlyBreakSelfTestOf?: WasmBuild;
}

/** The wasm `Engine` constructor's options: `EngineOptions` in web/src/options.rs (a Rust
 * test checks that both name the same fields). */
export interface EngineLoadOptions {
  nCtx?: number;
  expectedBytes?: number;
  act?: "int8" | "f32";
  scalar?: boolean;
  head?: "file" | "int8" | "int8-exact" | "int4-exact";
  kvCache?: "f32" | "f16";
  threads?: number;
  chatTemplate?: string;
  preTokenizer?: string;
  memoryLimit?: number;
}

/** One generation's options: the serde form of `bitnet_engine::session::GenerateOptions`
 * (a Rust test checks that both name the same fields). */
export interface EngineGenerateOptions {
  max_tokens?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  repetition_penalty?: number;
  repeat_window?: number;
  seed?: number;
  stop?: string[];
  loop_guard?: boolean | { max_period?: number; min_repeats?: number; min_span?: number };
  prefill_chunk?: number;
}

export type Request = { id: number } & (
  | LoadRequest
  | { op: "chat"; messages: ChatMessage[]; options: EngineGenerateOptions }
  | { op: "complete"; prompt: string; options: EngineGenerateOptions }
  | { op: "abort"; target: number }
  // A pool thread's answer to `start-pool`, passed on by the page; handled at once.
  | { op: "pool-thread"; pool: number; reply: PoolThreadReply }
  | { op: "tokenize"; text: string; special: boolean }
  | { op: "detokenize"; ids: number[] }
  | { op: "resetChat" }
  | { op: "stats" }
  | { op: "unload" }
  | { op: "loseGpu" }
  | { op: "panic" }
);

/** The engine's completion (serde form of `bitnet_engine::session::Completion`). */
export interface EngineCompletion {
  text: string;
  tokens: number[];
  prompt_ids: number[];
  finish_reason: "stop" | "length" | "context_full" | "loop" | "aborted";
  usage: {
    prompt_tokens: number;
    cached_tokens: number;
    completion_tokens: number;
    prefill_ms: number;
    decode_ms: number;
    ttft_ms: number;
    prefill_tps: number;
    decode_tps: number;
  };
}

export type Reply = { id: number } & (
  | { kind: "progress"; progress: LoadProgress }
  | { kind: "prefill"; done: number; total: number }
  | { kind: "token"; text: string; token: number }
  | { kind: "device-lost"; backend: Backend; message: string }
  // Asks the page for a pool's threads (builds.ts `PoolHost`), or to end them.
  | { kind: "start-pool"; pool: number; threads: number; start: PoolThreadStart }
  | { kind: "stop-pool"; pool: number }
  | { kind: "result"; value: unknown }
  | { kind: "error"; error: PlainError }
);

/** What a pool thread is sent over its port, and its answer (pool-thread.ts). */
export interface PoolThreadStart {
  variant: "relaxed-threads" | "simd128-threads";
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
}
export type PoolThreadReply = { ok: true } | { ok: false; why: string };

export type { LoadResult };
