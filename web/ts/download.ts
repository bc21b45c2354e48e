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
   * make one); runs before any offline copy is marked complete. */
  accept: (bytes: number) => void;
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
  const urls = parts.filter((p) => !(p instanceof Blob)).map((p) => new URL(String(p), location.href).href);
  // One tab at a time per model: a second tab waits here, then reuses the first one's
  // copy instead of writing over it.
  const release = await lockModels(urls, opts.signal);
  try {
    try {
      return await streamOnce(parts, sink, opts);
    } catch (e) {
      if (!(e instanceof VersionChanged)) throw e;
      // The partial copy is of another version of the file: it was dropped; start over
      // once, from the server's current version.
      sink.reset();
      return await streamOnce(parts, sink, opts);
    }
  } finally {
    release();
  }
}

async function streamOnce(parts: ModelPart[], sink: Sink, opts: StreamOptions): Promise<StreamResult> {
  const progress = new Progress(parts.length, opts.onProgress);
  const result: StreamResult = { source: "network", bytes: 0 };
  const copies: OfflineCopy[] = [];
  /** The URL being read, until its part is in. */
  let reading: string | null = null;
  try {
    for (let i = 0; i < parts.length; i++) {
      progress.part = i;
      const part = parts[i];
      let source: StreamResult["source"] = "file";
      if (part instanceof Blob) await fromLocal(part, i, sink, progress, opts, "file", "the file");
      else {
        reading = new URL(String(part), location.href).href;
        const copy = await fromUrl(reading, i, sink, progress, opts, result);
        reading = null;
        source = copy.source;
        copies.push(copy);
      }
      if (i === 0) result.source = source;
    }
    result.bytes = progress.loaded;
    opts.accept(result.bytes);
  } catch (e) {
    // Bytes that do not make a model are not kept, nor the partial copy of a file that
    // changed; a network failure keeps what arrived, so that the next attempt resumes.
    if (opts.cache) {
      const current = reading ? [reading] : [];
      const drop = isBadBytes(e)
        ? [...copies.map((c) => c.url), ...current]
        : e instanceof VersionChanged
          ? current
          : [];
      for (const url of drop) await deleteCachedModel(url).catch(() => {});
    }
    throw e;
  }
  // Only now, with every byte turned into a model, is a copy complete.
  for (const c of copies) {
    await c.commit().catch((e: unknown) => {
      result.cacheError = { kind: "io", message: `the model loaded but could not be kept offline: ${String(e)}` };
    });
  }
  return result;
}

/** Errors that mean the bytes themselves are wrong. */
const BAD_BYTES = new Set(["corrupt-model", "invalid-model", "wrong-content", "checksum-mismatch"]);

/** Whether `e` (a `BitnetError`, or an engine error carrying `kind`) says the bytes are wrong. */
function isBadBytes(e: unknown): boolean {
  const kind = (e as { kind?: unknown } | null)?.kind;
  return typeof kind === "string" && BAD_BYTES.has(kind);
}

/** Holds the Web Locks of the models' URLs (in one order, so two tabs cannot deadlock). */
async function lockModels(urls: string[], signal?: AbortSignal): Promise<() => void> {
  const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  if (!locks || urls.length === 0) return () => {};
  const releases: (() => void)[] = [];
  try {
    for (const url of [...new Set(urls)].sort()) {
      releases.push(
        await new Promise<() => void>((held, fail) => {
          locks
            .request(`bitnet-web model ${url}`, { signal }, () => new Promise<void>((release) => held(release)))
            .catch((e: unknown) => fail(signal?.aborted ? new BitnetError("aborted", "the load was aborted") : e));
        }),
      );
    }
  } catch (e) {
    for (const r of releases) r();
    throw e;
  }
  return () => {
    for (const r of releases) r();
  };
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

/** A model's offline copy as this load left it; `commit` marks it complete. */
interface OfflineCopy {
  url: string;
  source: "network" | "cache";
  commit(): Promise<void>;
}

async function fromUrl(
  url: string,
  part: number,
  sink: Sink,
  progress: Progress,
  opts: StreamOptions,
  result: StreamResult,
): Promise<OfflineCopy> {
  const useCache = opts.cache && cacheAvailable();
  const expected = opts.sha256[part];
  const hash = expected ? opts.newHasher() : null;
  const cached = useCache ? await lookup(url).catch(() => null) : null;
  const nothingToCommit = async () => {};

  // The complete copy: no network at all.
  if (cached?.meta.complete) {
    await fromLocal(cached.file, part, sink, progress, opts, "cache", "the cached copy");
    return { url, source: "cache", commit: nothingToCommit };
  }

  const dl = new Download(url, sink, part, progress, opts, hash);
  // A partial copy: feed what is on disk, then ask the server for the rest (checked to
  // be the same version of the file).
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
    dl.resume(meta);
    try {
      await pump(cached.file.slice(0, meta.written).stream(), opts.signal, (chunk) => dl.take(chunk, "cache"));
    } catch (e) {
      if (e instanceof DropError)
        throw new BitnetError("io", `reading the partial copy of ${url} failed: ${e.message}`);
      throw e;
    }
  }

  let writer: CacheWriter | null = null;
  if (useCache) {
    try {
      writer = await CacheWriter.open(url, dl.pos);
    } catch (e) {
      result.cacheError = cacheOpenError(e);
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
    if (writer) {
      writer.close();
      writer = null;
      // Keep what arrived so the next attempt resumes from there; a file that changed
      // is dropped by the caller, and nothing at all leaves no record.
      if (dl.pos === 0) await deleteCachedModel(url).catch(() => {});
      else if (!(e instanceof VersionChanged)) {
        await saveMeta({ ...meta, ...dl.validators(), written: dl.pos, savedAt: Date.now() }).catch(() => {});
      }
    }
    throw e;
  }
  writer?.close();
  verifyHash(hash, expected, "the download");
  if (!writer) return { url, source: "network", commit: nothingToCommit };
  // Written in full but not complete until the bytes have made a model.
  const whole: Meta = { ...meta, ...dl.validators(), written: dl.pos, complete: false, savedAt: Date.now() };
  await saveMeta(whole);
  return { url, source: "network", commit: () => saveMeta({ ...whole, complete: true, savedAt: Date.now() }) };
}

function cacheOpenError(e: unknown): { kind: ErrorKind; message: string } {
  const name = e instanceof DOMException ? e.name : "";
  if (name === "QuotaExceededError") {
    return {
      kind: "quota-exceeded",
      message: `the model cannot be kept offline: the storage quota is full (${String(e)})`,
    };
  }
  if (name === "NoModificationAllowedError" || name === "InvalidStateError") {
    return { kind: "io", message: "the model cannot be kept offline: another tab is writing its offline copy" };
  }
  return { kind: "io", message: `the model cannot be kept offline: ${String(e)}` };
}

/** One part over the network, in Range pieces, resumed after drops. Every answer is
 * checked against the validators (ETag, Last-Modified, size) of the bytes already
 * here, so two versions of a file are never joined. */
class Download {
  pos = 0;
  private total: number | null = null;
  private etag: string | null = null;
  private lastModified: string | null = null;
  /** Range pieces, or plain GETs that skip what is here already: for a server that
   * ignores Range, or a cross-origin one that does not expose `Content-Range`. */
  private ranged = true;
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

  resume(meta: Meta) {
    this.total = meta.total;
    this.etag = meta.etag;
    this.lastModified = meta.lastModified;
    this.open(meta.total, null);
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

  /** Fetches one piece; returns true when the whole file has arrived. No `If-Range`:
   * it is not a CORS-safelisted header (a preflight per piece, which some hosts
   * refuse), and the answer's own validators are checked instead. */
  private async piece(): Promise<boolean> {
    const headers: Record<string, string> = {};
    const start = this.pos;
    let want: number | null = null;
    if (this.ranged) {
      want = this.opts.rangeChunkBytes;
      if (this.total !== null) want = Math.min(want, this.total - start);
      headers.Range = `bytes=${start}-${start + want - 1}`;
    }
    let resp: Response;
    try {
      resp = await fetch(this.url, { headers, signal: this.opts.signal, cache: "no-store" });
    } catch (e) {
      if (this.opts.signal?.aborted) throw new BitnetError("aborted", "the load was aborted");
      if (start === 0 && !this.begun) {
        // A host that refuses ranged requests from other origins: try one plain GET.
        if (this.ranged) {
          this.ranged = false;
          return false;
        }
        // Before any byte, a failed fetch is either CORS or no network; after, a drop.
        throw await classifyFetchFailure(this.url, e);
      }
      throw new DropError(String(e));
    }
    if (resp.status === 404 || resp.status === 410) {
      throw new BitnetError("not-found", `the model was not found at ${this.url} (HTTP ${resp.status})`, resp.status);
    }
    if (resp.status === 416 && start > 0 && (this.total === null || start >= this.total)) {
      // The last piece ended exactly at the end of a file of unknown size.
      this.total ??= start;
      return true;
    }
    if (!resp.ok) {
      const err = new BitnetError("http", `the server answered HTTP ${resp.status} for ${this.url}`, resp.status);
      if (resp.status >= 500) throw new DropError(err.message);
      throw err;
    }
    this.checkVersion(resp);
    let skip = 0;
    if (resp.status === 206) {
      const range = resp.headers.get("Content-Range");
      if (range === null) {
        // Cross-origin without `Access-Control-Expose-Headers: Content-Range`: where the
        // piece sits in the file cannot be checked, so take the file in plain GETs.
        await resp.body?.cancel().catch(() => {});
        this.ranged = false;
        return false;
      }
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(range.trim());
      if (!m || Number(m[1]) !== start) throw new DropError("the server sent the wrong range");
      if (m[3] !== "*") this.noteTotal(Number(m[3]));
    } else {
      // A full body (the server ignores Range): skip what is here already.
      this.ranged = false;
      want = null;
      const len = resp.headers.get("Content-Length");
      if (len !== null) this.noteTotal(Number(len));
      skip = start;
    }
    this.open(this.total, resp.headers.get("Content-Type"));
    if (!resp.body) throw new DropError("empty response");
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
    if (skip > 0) throw new DropError("the body ended before the bytes already here");
    if (this.total !== null) return this.pos >= this.total;
    // Size unknown (`Content-Range: …/*`, or a 200 without Content-Length): a full
    // piece may have more after it; anything else ends the file. A body cut short
    // here is caught when the bytes do not make a model.
    if (want !== null && this.pos - start >= want) return false;
    this.total = this.pos;
    return true;
  }

  /** Whatever validators the answer carries must be those of the bytes already here. */
  private checkVersion(resp: Response) {
    const etag = resp.headers.get("ETag");
    const lastModified = resp.headers.get("Last-Modified");
    if (
      (this.etag !== null && etag !== null && etag !== this.etag) ||
      (this.lastModified !== null && lastModified !== null && lastModified !== this.lastModified)
    ) {
      throw new VersionChanged(this.url);
    }
    this.etag ??= etag;
    this.lastModified ??= lastModified;
  }

  private noteTotal(total: number) {
    if (this.total !== null && this.total !== total) throw new VersionChanged(this.url);
    this.total = total;
  }
}

/** The server's file is not the one whose bytes are here already. */
class VersionChanged extends BitnetError {
  constructor(url: string) {
    super("network", `${url} changed on the server while it was being downloaded; load it again`);
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
