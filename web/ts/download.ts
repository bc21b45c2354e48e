/**
 * Streams a model's bytes into the engine: from the offline copy when there is one,
 * else over `fetch` in HTTP Range pieces that are written to the offline copy as they
 * arrive. A dropped connection resumes at the byte where it stopped (this visit, or
 * the next one from the partial copy). Runs in the worker.
 */
import { BitnetError, type ErrorKind } from "./errors.js";
import { CacheWriter, cacheAvailable, deleteCachedModel, lookup, saveMeta, type Meta } from "./cache.js";
import type { LoadProgress, ModelPart } from "./types.js";

/** Where the bytes go: `begin` opens a part (its size when known), `push` feeds it. */
export interface Sink {
  begin(part: number, bytes: number | null): void;
  push(chunk: Uint8Array): void;
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
}

export interface StreamResult {
  source: "network" | "cache" | "file";
  bytes: number;
  cacheError?: { kind: ErrorKind; message: string };
}

const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46];
/** How often the partial copy's record is brought up to date. */
const META_EVERY = 16 << 20;

class Progress {
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
    const total = this.totals.every((t) => t !== null)
      ? this.totals.reduce<number>((a, t) => a + (t ?? 0), 0)
      : null;
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
class MagicCheck {
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

export async function streamModel(parts: ModelPart[], sink: Sink, opts: StreamOptions): Promise<StreamResult> {
  const progress = new Progress(parts.length, opts.onProgress);
  const result: StreamResult = { source: "network", bytes: 0 };
  for (let i = 0; i < parts.length; i++) {
    progress.part = i;
    const part = parts[i];
    const source =
      part instanceof Blob
        ? await fromLocal(part, i, sink, progress, opts, "file", "the file").then(() => "file" as const)
        : await fromUrl(new URL(String(part), location.href).href, i, sink, progress, opts, result);
    if (i === 0) result.source = source;
  }
  result.bytes = progress.loaded;
  return result;
}

/** A whole file already on this device (a picked `File`, or the complete offline copy). */
async function fromLocal(
  blob: Blob,
  part: number,
  sink: Sink,
  progress: Progress,
  opts: StreamOptions,
  phase: "file" | "cache",
  what: string,
) {
  progress.setTotal(part, blob.size);
  sink.begin(part, blob.size);
  const magic = new MagicCheck(blob.type || null);
  const hash = opts.sha256[part] ? opts.newHasher() : null;
  try {
    await pump(blob.stream(), opts.signal, (chunk) => {
      magic.check(chunk);
      sink.push(chunk);
      hash?.update(chunk);
      progress.add(chunk.byteLength, phase);
    });
  } catch (e) {
    // A local file or the offline copy that cannot be read (changed or removed on disk,
    // a storage error): not a network drop to retry, and not the worker's fault.
    if (e instanceof DropError) throw new BitnetError("io", `reading ${what} failed: ${e.message}`);
    throw e;
  }
  verifyHash(hash, opts.sha256[part], what);
}

async function pump(
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

function verifyHash(hash: Hasher | null, expected: string | undefined, what: string) {
  if (!hash || !expected) return;
  const got = hash.hex();
  if (got !== expected.toLowerCase()) {
    throw new BitnetError("checksum-mismatch", `${what} has SHA-256 ${got}, expected ${expected.toLowerCase()}`);
  }
}

async function fromUrl(
  url: string,
  part: number,
  sink: Sink,
  progress: Progress,
  opts: StreamOptions,
  result: StreamResult,
): Promise<"network" | "cache"> {
  const useCache = opts.cache && cacheAvailable();
  const expected = opts.sha256[part];
  const hash = expected ? opts.newHasher() : null;
  const cached = useCache ? await lookup(url).catch(() => null) : null;

  // The complete copy: no network at all.
  if (cached?.meta.complete) {
    try {
      await fromLocal(cached.file, part, sink, progress, opts, "cache", "the cached copy");
    } catch (e) {
      if (e instanceof BitnetError && e.kind === "checksum-mismatch") await deleteCachedModel(url);
      throw e;
    }
    return "cache";
  }

  const dl = new Download(url, sink, part, progress, opts, hash);
  // A partial copy: feed what is on disk, then ask the server for the rest.
  let meta: Meta = {
    url,
    total: null,
    written: 0,
    complete: false,
    etag: null,
    lastModified: null,
    savedAt: Date.now(),
  };
  if (cached && cached.meta.written > 0 && cached.meta.total !== null) {
    meta = cached.meta;
    dl.setValidators(cached.meta.total, meta.etag, meta.lastModified);
    await pump(cached.file.slice(0, meta.written).stream(), opts.signal, (chunk) => dl.take(chunk, "cache"));
  }

  let writer: CacheWriter | null = null;
  if (useCache) {
    try {
      writer = await CacheWriter.open(url, dl.pos);
    } catch (e) {
      result.cacheError = { kind: "quota-exceeded", message: `the model cannot be kept offline: ${String(e)}` };
    }
  }
  let sinceMeta = 0;
  dl.onBytes = (chunk, at) => {
    if (!writer) return;
    try {
      writer.write(chunk, at);
      sinceMeta += chunk.byteLength;
      if (sinceMeta >= META_EVERY) {
        sinceMeta = 0;
        writer.flush();
        meta = { ...meta, ...dl.validators(), written: at + chunk.byteLength };
        void saveMeta(meta);
      }
    } catch (e) {
      writer.close();
      writer = null;
      void deleteCachedModel(url);
      const quota = e instanceof DOMException && e.name === "QuotaExceededError";
      result.cacheError = {
        kind: quota ? "quota-exceeded" : "io",
        message: quota
          ? "the browser's storage quota is full: the model loaded but is not kept for offline use"
          : `the model loaded but could not be kept offline: ${String(e)}`,
      };
    }
  };
  try {
    await dl.run();
  } catch (e) {
    // Keep what arrived so the next attempt resumes from there.
    if (writer) {
      writer.close();
      writer = null;
      await saveMeta({ ...meta, ...dl.validators(), written: dl.pos, savedAt: Date.now() }).catch(() => {});
    }
    throw e;
  }
  if (writer) {
    writer.close();
    try {
      verifyHash(hash, expected, "the download");
    } catch (e) {
      await deleteCachedModel(url);
      throw e;
    }
    await saveMeta({ ...meta, ...dl.validators(), written: dl.pos, complete: true, savedAt: Date.now() });
  } else {
    verifyHash(hash, expected, "the download");
  }
  return "network";
}

/** One part over the network, in Range pieces, resumed after drops. */
class Download {
  pos = 0;
  private total: number | null = null;
  private etag: string | null = null;
  private lastModified: string | null = null;
  private rangesWork = true;
  private begun = false;
  private magic: MagicCheck | null = null;
  onBytes: (chunk: Uint8Array, at: number) => void = () => {};

  constructor(
    private url: string,
    private sink: Sink,
    private part: number,
    private progress: Progress,
    private opts: StreamOptions,
    private hash: Hasher | null,
  ) {}

  setValidators(total: number, etag: string | null, lastModified: string | null) {
    this.total = total;
    this.etag = etag;
    this.lastModified = lastModified;
    this.open(total, null);
  }

  validators() {
    return { total: this.total, etag: this.etag, lastModified: this.lastModified };
  }

  private open(total: number | null, contentType: string | null) {
    if (this.begun) return;
    this.begun = true;
    this.magic = new MagicCheck(contentType);
    this.progress.setTotal(this.part, total);
    this.sink.begin(this.part, total);
  }

  take(chunk: Uint8Array, phase: LoadProgress["phase"]) {
    this.magic?.check(chunk);
    this.sink.push(chunk);
    this.hash?.update(chunk);
    this.pos += chunk.byteLength;
    this.progress.add(chunk.byteLength, phase);
  }

  async run(): Promise<void> {
    let failures = 0;
    while (this.total === null || this.pos < this.total) {
      try {
        const before = this.pos;
        const finished = await this.piece();
        if (this.pos > before) failures = 0;
        if (finished) return;
      } catch (e) {
        if (!(e instanceof DropError)) throw e;
        failures++;
        if (failures > this.opts.retries) {
          throw new BitnetError(
            "network",
            `the download of ${this.url} failed ${failures} times in a row at byte ${this.pos}: ${e.message}`,
          );
        }
        this.progress.report("retry");
        await sleep(Math.min(200 * 2 ** (failures - 1), 5000), this.opts.signal);
      }
    }
  }

  /** Fetches one Range piece; returns true when the whole file has arrived. */
  private async piece(): Promise<boolean> {
    const headers: Record<string, string> = {};
    const ranged = this.rangesWork;
    if (ranged) {
      const end = this.pos + this.opts.rangeChunkBytes - 1;
      headers.Range = `bytes=${this.pos}-${this.total !== null ? Math.min(end, this.total - 1) : end}`;
      const strong = this.etag && !this.etag.startsWith("W/") ? this.etag : null;
      if (this.pos > 0 && (strong || this.lastModified)) headers["If-Range"] = strong ?? this.lastModified!;
    }
    let resp: Response;
    try {
      resp = await fetch(this.url, { headers, signal: this.opts.signal, cache: "no-store" });
    } catch (e) {
      if (this.opts.signal?.aborted) throw new BitnetError("aborted", "the load was aborted");
      // Before any byte, a failed fetch is either CORS or no network; after, a drop.
      if (this.pos === 0 && !this.begun) throw await classifyFetchFailure(this.url, e);
      throw new DropError(String(e));
    }
    if (resp.status === 404 || resp.status === 410) {
      throw new BitnetError("not-found", `the model was not found at ${this.url} (HTTP ${resp.status})`, resp.status);
    }
    if (resp.status === 416 && this.total !== null && this.pos >= this.total) return true;
    if (!resp.ok) {
      const err = new BitnetError("http", `the server answered HTTP ${resp.status} for ${this.url}`, resp.status);
      if (resp.status >= 500) throw new DropError(err.message);
      throw err;
    }
    let skip = 0;
    if (resp.status === 206) {
      const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(resp.headers.get("Content-Range") ?? "");
      if (!m || Number(m[1]) !== this.pos) throw new DropError("the server sent the wrong range");
      if (m[3] !== "*") this.noteTotal(Number(m[3]));
    } else {
      // A full body: the server ignores Range, or the file changed (If-Range failed).
      const len = resp.headers.get("Content-Length");
      const changed =
        this.pos > 0 &&
        ((this.etag !== null && resp.headers.get("ETag") !== this.etag) ||
          (len !== null && this.total !== null && Number(len) !== this.total));
      if (changed) {
        throw new BitnetError(
          "network",
          `${this.url} changed on the server during the download; load it again to start over`,
        );
      }
      if (ranged && this.pos === 0 && !this.begun) this.rangesWork = false;
      if (len !== null) this.noteTotal(Number(len));
      skip = this.pos;
    }
    this.etag ??= resp.headers.get("ETag");
    this.lastModified ??= resp.headers.get("Last-Modified");
    this.open(this.total, resp.headers.get("Content-Type"));
    if (!resp.body) throw new DropError("empty response");
    {
      await pump(resp.body, this.opts.signal, (chunk) => {
        if (skip > 0) {
          const n = Math.min(skip, chunk.byteLength);
          skip -= n;
          chunk = chunk.subarray(n);
          if (chunk.byteLength === 0) return;
        }
        if (this.total !== null && this.pos + chunk.byteLength > this.total) {
          throw new BitnetError("network", `the server sent more than the ${this.total} bytes it announced`);
        }
        const at = this.pos;
        this.take(chunk, "download");
        this.onBytes(chunk, at);
      });
    }
    if (this.total === null) {
      // No length known: the body's end is the file's end (no resume possible).
      this.total = this.pos;
      return true;
    }
    return this.pos >= this.total;
  }

  private noteTotal(total: number) {
    if (this.total !== null && this.total !== total) {
      throw new BitnetError(
        "network",
        `${this.url} changed size on the server (${this.total} → ${total} bytes); load it again`,
      );
    }
    this.total = total;
  }
}

/** A stream that failed while being read (a dropped connection): retried from `pos`. */
class DropError extends Error {}

async function classifyFetchFailure(url: string, e: unknown): Promise<BitnetError> {
  if (typeof navigator !== "undefined" && navigator.onLine === false) {
    return new BitnetError("network", `no network connection, and ${url} is not in the offline cache`);
  }
  try {
    // An opaque answer means the server is there but does not allow this origin.
    await fetch(url, { mode: "no-cors", method: "HEAD", cache: "no-store" });
    return new BitnetError(
      "cors",
      `${url} cannot be read from this page: the server does not send CORS headers (Access-Control-Allow-Origin) for this origin`,
    );
  } catch {
    return new BitnetError("network", `could not connect to ${url}: ${String(e)}`);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(new BitnetError("aborted", "the load was aborted"));
    });
  });
}
