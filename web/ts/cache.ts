/**
 * The offline copy of downloaded models, in the origin private file system (OPFS).
 *
 * Why OPFS and not the Cache API: a model arrives in ranged pieces and may be cut off;
 * OPFS lets the worker write each piece in place as it arrives (a synchronous access
 * handle, no second copy of a 1.2 GB file in memory) and keep a partial file that the
 * next visit resumes. The Cache API stores whole `Response`s only.
 *
 * Each model is two files named by the SHA-256 of its URL: `<key>.gguf` (the bytes) and
 * `<key>.json` (its URL, size, validators and whether it is complete). A copy counts as
 * complete only when its size equals the server's and, when the caller gave one, its
 * SHA-256 matched.
 */
import { BitnetError } from "./errors.js";
import type { CachedModel } from "./types.js";

const DIR = "bitnet-web-models";

// Worker-only OPFS API, missing from TypeScript's DOM library.
export interface FileSystemSyncAccessHandle {
  read(buffer: ArrayBufferView, options?: { at?: number }): number;
  write(buffer: ArrayBufferView, options?: { at?: number }): number;
  getSize(): number;
  truncate(size: number): void;
  flush(): void;
  close(): void;
}
type SyncFileHandle = FileSystemFileHandle & {
  createSyncAccessHandle(): Promise<FileSystemSyncAccessHandle>;
};

export interface Meta {
  url: string;
  total: number | null;
  /** Bytes from the start of the file known to be on disk. */
  written: number;
  complete: boolean;
  etag: string | null;
  lastModified: string | null;
  savedAt: number;
}

export function cacheAvailable(): boolean {
  return typeof navigator !== "undefined" && !!navigator.storage?.getDirectory;
}

async function dir(): Promise<FileSystemDirectoryHandle> {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(DIR, { create: true });
}

async function keyOf(url: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(url));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function readJson(d: FileSystemDirectoryHandle, name: string): Promise<Meta | null> {
  try {
    const f = await (await d.getFileHandle(name)).getFile();
    return JSON.parse(await f.text()) as Meta;
  } catch {
    return null;
  }
}

/** The copy of `url`, complete or partial, with its bytes on disk checked against its record. */
export async function lookup(url: string): Promise<{ meta: Meta; file: File } | null> {
  const d = await dir();
  const key = await keyOf(url);
  const meta = await readJson(d, `${key}.json`);
  if (!meta || meta.url !== url) return null;
  try {
    const file = await (await d.getFileHandle(`${key}.gguf`)).getFile();
    // A record ahead of the data (a crash between the two writes) must not be trusted.
    if (file.size < meta.written) meta.written = file.size;
    if (meta.complete && (meta.total === null || file.size !== meta.total)) meta.complete = false;
    return { meta, file };
  } catch {
    return null;
  }
}

export async function saveMeta(meta: Meta): Promise<void> {
  const d = await dir();
  const key = await keyOf(meta.url);
  const h = await d.getFileHandle(`${key}.json`, { create: true });
  const text = new TextEncoder().encode(JSON.stringify(meta));
  // Safari before 26 has no createWritable; the worker, where this runs, has sync handles.
  if (typeof h.createWritable !== "function") {
    const sync = await (h as SyncFileHandle).createSyncAccessHandle();
    try {
      sync.truncate(0);
      sync.write(text, { at: 0 });
      sync.flush();
    } finally {
      sync.close();
    }
    return;
  }
  const w = await h.createWritable();
  await w.write(text);
  await w.close();
}

/** Writes a model's bytes in place; only in a dedicated worker (synchronous access handle). */
export class CacheWriter {
  private constructor(private handle: FileSystemSyncAccessHandle) {}

  static async open(url: string, keepBytes: number): Promise<CacheWriter> {
    const d = await dir();
    const key = await keyOf(url);
    const fh = await d.getFileHandle(`${key}.gguf`, { create: true });
    const handle = await (fh as SyncFileHandle).createSyncAccessHandle();
    handle.truncate(keepBytes);
    return new CacheWriter(handle);
  }

  /** Throws `QuotaExceededError` when the origin's storage is full. */
  write(chunk: Uint8Array, at: number): void {
    const n = this.handle.write(chunk, { at });
    if (n !== chunk.byteLength) throw new DOMException("short write", "QuotaExceededError");
  }

  flush(): void {
    this.handle.flush();
  }

  close(): void {
    try {
      this.handle.flush();
    } finally {
      this.handle.close();
    }
  }
}

/** A handle to read the copy of `url` at any offset, for as long as the model runs
 * (only in a dedicated worker). The copy stays locked until the handle is closed: it
 * cannot be deleted or written meanwhile. */
export async function openOfflineCopy(url: string): Promise<FileSystemSyncAccessHandle> {
  const d = await dir();
  const fh = await d.getFileHandle(`${await keyOf(url)}.gguf`);
  return (fh as SyncFileHandle).createSyncAccessHandle();
}

/** Every cached model, complete or not, with its size on disk. */
export async function listCachedModels(): Promise<CachedModel[]> {
  if (!cacheAvailable()) return [];
  const d = await dir();
  const out: CachedModel[] = [];
  for await (const [name] of d as unknown as AsyncIterable<[string, FileSystemHandle]>) {
    if (!name.endsWith(".json")) continue;
    const meta = await readJson(d, name);
    if (!meta) continue;
    const entry = await lookup(meta.url);
    out.push({
      url: meta.url,
      bytes: entry?.file.size ?? 0,
      total: meta.total,
      complete: entry?.meta.complete ?? false,
      savedAt: meta.savedAt,
    });
  }
  return out.sort((a, b) => b.savedAt - a.savedAt);
}

/** Deletes the copy of `url`; returns whether there was one. */
export async function deleteCachedModel(url: string): Promise<boolean> {
  if (!cacheAvailable()) return false;
  const d = await dir();
  const key = await keyOf(url);
  let found = false;
  // The bytes first: if they are still open (a worker loading them), the record stays
  // and the copy stays listed, instead of an invisible file that holds quota.
  for (const name of [`${key}.gguf`, `${key}.json`]) {
    try {
      await d.removeEntry(name);
      found = true;
    } catch (e) {
      if ((e as DOMException).name === "NotFoundError") continue;
      throw new BitnetError("io", `the offline copy of ${url} is in use (a model is loading from it); unload it first`);
    }
  }
  return found;
}
