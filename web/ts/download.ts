/**
 * Streams a model's bytes into the engine: from the offline copy when there is one,
 * else over `fetch` in HTTP Range pieces that are written to the offline copy as they
 * arrive. A dropped connection resumes at the byte where it stopped (this visit, or
 * the next one from the partial copy). Runs in the worker.
 */
import { BitnetError, type ErrorKind } from "./errors.js";
import { CacheWriter, cacheAvailable, deleteCachedModel, lookup, saveMeta, type Meta } from "./cache.js";
import { Download, VersionChanged } from "./range-download.js";
import {
  DropError,
  type Hasher,
  MagicCheck,
  Progress,
  pump,
  type Sink,
  type StreamOptions,
  type StreamResult,
} from "./stream.js";
import type { ModelPart } from "./types.js";

export type { Sink, StreamOptions, StreamResult };

/** How often the partial copy's record is brought up to date. */
const META_EVERY = 16 << 20;

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
    await opts.accept(result.bytes);
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
  if (opts.cache && !useCache)
    result.cacheError = {
      kind: "unsupported-device",
      message:
        "this browser gives the page no origin private file system (navigator.storage.getDirectory), so the model is not kept offline",
    };
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
