/**
 * What every source of a model's bytes shares: the sink they feed, the options and
 * result of a load, the progress report, and the check that a file starts as a GGUF.
 */
import type { ErrorKind } from "./errors.js";
import { BitnetError } from "./errors.js";
import type { LoadProgress } from "./types.js";

/** Where the bytes go: `begin` opens a part (its size when known), `push` feeds it. */
export interface Sink {
  begin(part: number, bytes: number | null): void;
  push(chunk: Uint8Array): void;
  /** Forgets every byte pushed: the download starts over. */
  reset(): void;
}

/** Incremental SHA-256 (the engine's, in wasm). */
export interface Hasher {
  update(chunk: Uint8Array): void;
  hex(): string;
}

export interface StreamOptions {
  newHasher: () => Hasher;
  cache: boolean;
  sha256: (string | undefined)[];
  rangeChunkBytes: number;
  retries: number;
  signal?: AbortSignal;
  onProgress: (p: LoadProgress) => void;
  /** Builds the model from the bytes (all parts: `bytes` of them; throws if they do not
   * make one); runs before any offline copy is marked complete, with every part's copy
   * written in full and closed. */
  accept: (bytes: number) => void | Promise<void>;
}

export interface StreamResult {
  source: "network" | "cache" | "file";
  bytes: number;
  cacheError?: { kind: ErrorKind; message: string };
}

const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46];

export class Progress {
  loaded = 0;
  private totals: (number | null)[];
  private samples: [number, number][] = [];
  part = 0;

  constructor(
    parts: number,
    private emit: (p: LoadProgress) => void,
  ) {
    this.totals = new Array(parts).fill(null);
  }

  setTotal(part: number, bytes: number | null) {
    this.totals[part] = bytes;
  }

  add(n: number, phase: LoadProgress["phase"]) {
    this.loaded += n;
    const now = performance.now();
    this.samples.push([now, this.loaded]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 2000) this.samples.shift();
    this.report(phase);
  }

  report(phase: LoadProgress["phase"]) {
    const [t0, b0] = this.samples[0] ?? [0, 0];
    const [t1, b1] = this.samples[this.samples.length - 1] ?? [0, 0];
    const rate = t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
    const total = this.totals.every((t) => t !== null) ? this.totals.reduce<number>((a, t) => a + (t ?? 0), 0) : null;
    this.emit({
      phase,
      loaded: this.loaded,
      total,
      rate,
      eta: total !== null && rate > 0 ? (total - this.loaded) / rate : null,
      part: this.part,
      parts: this.totals.length,
    });
  }
}

/** Checks the first bytes of a part before the engine sees them, so a web page or an
 * error document served in place of the model gets a clear message. */
export class MagicCheck {
  private seen: number[] = [];
  constructor(private contentType: string | null) {}

  check(chunk: Uint8Array) {
    if (this.seen.length >= 4) return;
    for (const b of chunk.subarray(0, 4 - this.seen.length)) this.seen.push(b);
    if (this.seen.some((b, i) => b !== GGUF_MAGIC[i])) {
      const what = this.contentType ? `${this.contentType} content` : "data";
      const start = new TextDecoder().decode(new Uint8Array(this.seen));
      throw new BitnetError(
        "wrong-content",
        `this is not a GGUF model: the server sent ${what} starting with ${JSON.stringify(start)}`,
      );
    }
  }
}

/** A stream that failed while being read (a dropped connection): retried from `pos`. */
export class DropError extends Error {}

export async function pump(
  stream: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
  each: (chunk: Uint8Array) => void,
): Promise<void> {
  const reader = stream.getReader();
  try {
    for (;;) {
      if (signal?.aborted) throw new BitnetError("aborted", "the load was aborted");
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (e) {
        throw new DropError(String(e));
      }
      const { done, value } = next;
      if (done) return;
      each(value);
    }
  } finally {
    reader.releaseLock();
  }
}
