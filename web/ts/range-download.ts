/**
 * One model part over HTTP: Range pieces, retried with back-off after a dropped
 * connection, each answer checked against the validators of the bytes already here.
 */
import type { Meta } from "./cache.js";
import { BitnetError } from "./errors.js";
import { DropError, type Hasher, MagicCheck, type Progress, pump, type Sink, type StreamOptions } from "./stream.js";
import type { LoadProgress } from "./types.js";

/** One part over the network, in Range pieces, resumed after drops. Every answer is
 * checked against the validators (ETag, Last-Modified, size) of the bytes already
 * here, so two versions of a file are never joined. */
export class Download {
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
export class VersionChanged extends BitnetError {
  constructor(url: string) {
    super("network", `${url} changed on the server while it was being downloaded; load it again`);
  }
}

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
