/**
 * The HTTP server the browser tests start for themselves. It serves the built package
 * (`dist/`), the test page and the fixture models with Range support, and can misbehave
 * on purpose: drop a connection part way, refuse Range, send a 404, an HTML page, a
 * corrupt model, change the file under a download (`quirks`), hide its size, or (on
 * other origins) send no CORS headers, or CORS headers that expose nothing and refuse
 * every preflight.
 */
import { createReadStream, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
// The headers the chat app's server sends for cross-origin isolation.
import { decodePath, ISOLATION } from "../../www/scripts/serve.mjs";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const FIXTURES = join(ROOT, "tests/fixtures");
const GENERATED = join(ROOT, "target/browser-fixtures");

const TYPES: Record<string, string> = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".map": "application/json",
  ".css": "text/css",
  ".gguf": "application/octet-stream",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".webmanifest": "application/manifest+json",
};

export interface RequestLog {
  path: string;
  range: string | null;
  status: number;
}

/** How a model path misbehaves, set by a test (all optional). */
export interface Quirks {
  /** The file's bytes (instead of the fixture's). */
  body?: Buffer;
  /** The ETag sent (`null`: none); by default one made of the size. */
  etag?: string | null;
  /** The Last-Modified sent (`null`: none). */
  lastModified?: string | null;
  /** `Content-Range: bytes a-b/*`: the size is not told. */
  unknownTotal?: boolean;
  /** No Content-Length (the body ends when the connection does). */
  noLength?: boolean;
  /** Milliseconds to wait before answering. */
  delayMs?: number;
}

export interface TestServer {
  url: string;
  /** Another origin whose answers carry no CORS headers. */
  crossUrl: string;
  /** Another origin that allows this one but exposes no header beyond the safelisted
   * ones (so no Content-Range, no ETag) and refuses every preflight. */
  bareCorsUrl: string;
  log: RequestLog[];
  /** Paths (without query) that drop their connection after `bytes` body bytes, `times` times. */
  drops: Map<string, { bytes: number; times: number }>;
  quirks: Map<string, Quirks>;
  /** Every model request fails as if the host were unreachable (logged with status 0). */
  offlineModels: boolean;
  /** Forgets the log and every drop and quirk (between tests). */
  reset(): void;
  close(): Promise<void>;
}

type Cors = "full" | "none" | "bare";

function modelFile(name: string): string | null {
  for (const dir of [FIXTURES, GENERATED]) {
    const p = join(dir, normalize(name).replace(/^(\.\.[/\\])+/, ""));
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return null;
}

function corrupt(file: string): Buffer {
  // Valid magic and version, then an absurd tensor count.
  const b = Buffer.from(readFileSync(file));
  b.writeBigUInt64LE(0xffff_ffff_ffffn, 8);
  return b;
}

async function sendBytes(
  req: IncomingMessage,
  res: ServerResponse,
  server: TestServer,
  path: string,
  size: number,
  open: (start: number, end: number) => NodeJS.ReadableStream,
  opts: { ranges: boolean; cors: Cors; type: string },
) {
  const quirks = server.quirks.get(path) ?? {};
  if (quirks.body) {
    const body = quirks.body;
    size = body.length;
    open = (s, e) => bufferStream(body.subarray(s, e + 1));
  }
  const headers: Record<string, string | number> = {
    "Content-Type": opts.type,
    "Cache-Control": "no-store",
  };
  const etag = quirks.etag === undefined ? `"${size}-fixture"` : quirks.etag;
  const lastModified = quirks.lastModified === undefined ? new Date(0).toUTCString() : quirks.lastModified;
  if (etag !== null) headers.ETag = etag;
  if (lastModified !== null) headers["Last-Modified"] = lastModified;
  if (opts.cors !== "none") headers["Access-Control-Allow-Origin"] = "*";
  if (opts.cors === "full") {
    headers["Access-Control-Expose-Headers"] = "Content-Range, Content-Length, ETag, Last-Modified";
  }
  if (opts.ranges) headers["Accept-Ranges"] = "bytes";
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = opts.ranges ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
  const ifRange = req.headers["if-range"];
  if (range && (!ifRange || ifRange === etag)) {
    start = Number(range[1]);
    end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
    if (start >= size) {
      res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` }).end();
      server.log.push({ path, range: req.headers.range ?? null, status: 416 });
      return;
    }
    status = 206;
    headers["Content-Range"] = `bytes ${start}-${end}/${quirks.unknownTotal ? "*" : size}`;
  }
  if (!quirks.noLength) headers["Content-Length"] = end - start + 1;
  server.log.push({ path, range: req.headers.range ?? null, status });
  if (quirks.delayMs) await new Promise((ok) => setTimeout(ok, quirks.delayMs));
  res.writeHead(status, headers);
  if (req.method === "HEAD") return void res.end();
  const drop = server.drops.get(path);
  const stream = open(start, end);
  if (drop && drop.times > 0) {
    drop.times--;
    let sent = 0;
    stream.on("data", (chunk: Buffer) => {
      if (sent + chunk.length >= drop.bytes) {
        res.write(chunk.subarray(0, Math.max(0, drop.bytes - sent)));
        (stream as unknown as { destroy(): void }).destroy();
        // Cut the connection mid-body, as a flaky network would.
        setTimeout(() => res.socket?.destroy(), 20);
        sent = drop.bytes;
        return;
      }
      sent += chunk.length;
      res.write(chunk);
    });
    stream.on("end", () => res.end());
  } else stream.pipe(res);
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const s = createServer(handler);
  return new Promise((ok) => s.listen(0, "127.0.0.1", () => ok(s)));
}

/** `isolated`: pages and scripts come cross-origin isolated (COOP + COEP), as a host
 * must serve them for the engine's threads. */
export async function startServer(opts: { isolated?: boolean } = {}): Promise<TestServer> {
  const server: TestServer = {
    url: "",
    crossUrl: "",
    bareCorsUrl: "",
    log: [],
    drops: new Map(),
    quirks: new Map(),
    offlineModels: false,
    reset() {
      server.offlineModels = false;
      server.log.length = 0;
      server.drops.clear();
      server.quirks.clear();
    },
    close: async () => {},
  };
  const handle = (cors: Cors) => (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    const path = decodePath(url.pathname);
    if (path === null) return void res.writeHead(400).end("bad request: malformed %-escape");
    if (req.method === "OPTIONS") {
      // A preflight: the full-CORS origin allows the headers a download may send.
      server.log.push({ path, range: null, status: cors === "full" ? 204 : 403 });
      if (cors !== "full") return void res.writeHead(403).end();
      return void res
        .writeHead(204, {
          "Access-Control-Allow-Origin": "*",
          "Access-Control-Allow-Headers": "Range, If-Range",
          "Access-Control-Allow-Methods": "GET, HEAD",
        })
        .end();
    }
    const model = /^\/(models|flaky|norange|corrupt)\/(.+)$/.exec(path);
    if (model && server.offlineModels) {
      server.log.push({ path, range: req.headers.range ?? null, status: 0 });
      return void req.socket.destroy();
    }
    if (model) {
      const file = modelFile(model[2]);
      if (!file) {
        server.log.push({ path, range: req.headers.range ?? null, status: 404 });
        return void res.writeHead(404, { "Access-Control-Allow-Origin": "*" }).end("not found");
      }
      if (model[1] === "corrupt") {
        const bytes = corrupt(file);
        return void sendBytes(req, res, server, path, bytes.length, (s, e) => bufferStream(bytes.subarray(s, e + 1)), {
          ranges: true,
          cors,
          type: "application/octet-stream",
        }).catch(() => res.destroy());
      }
      return void sendBytes(
        req,
        res,
        server,
        path,
        statSync(file).size,
        (s, e) => createReadStream(file, { start: s, end: e }),
        {
          ranges: model[1] !== "norange",
          cors,
          type: "application/octet-stream",
        },
      ).catch(() => res.destroy());
    }
    if (path === "/html/model.gguf") {
      return void res
        .writeHead(200, { "Content-Type": "text/html", "Access-Control-Allow-Origin": "*" })
        .end("<!doctype html><title>Sign in</title><p>Please sign in to download this file.</p>");
    }
    // Static files: the package build, the test pages, and anything else in the repo.
    const file = join(ROOT, normalize(path === "/" ? "/tests/browser/pages/index.html" : path));
    if (!file.startsWith(ROOT)) return void res.writeHead(403).end();
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error("not a file");
      res.writeHead(200, {
        "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
        "Content-Length": st.size,
        // Cacheable, so a page reloaded offline finds its scripts in the HTTP cache.
        "Cache-Control": "max-age=600",
        ...(opts.isolated ? ISOLATION : {}),
      });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end("not found");
    }
  };
  const main = await listen(handle("full"));
  const cross = await listen(handle("none"));
  const bare = await listen(handle("bare"));
  server.url = `http://127.0.0.1:${(main.address() as AddressInfo).port}`;
  // "localhost" is another origin than 127.0.0.1 for the browser.
  server.crossUrl = `http://localhost:${(cross.address() as AddressInfo).port}`;
  server.bareCorsUrl = `http://localhost:${(bare.address() as AddressInfo).port}`;
  server.close = async () => {
    for (const s of [main, cross, bare]) s.closeAllConnections();
    await Promise.all([main, cross, bare].map((s) => new Promise((ok) => s.close(ok))));
  };
  return server;
}

function bufferStream(b: Buffer): NodeJS.ReadableStream {
  return Readable.from([b]);
}
