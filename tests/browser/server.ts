/**
 * The HTTP server the browser tests start for themselves. It serves the built package
 * (`dist/`), the test page and the fixture models with Range support, and can misbehave
 * on purpose: drop a connection part way, refuse Range, send a 404, an HTML page, a
 * corrupt model, or (on a second origin) no CORS headers.
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

export interface TestServer {
  url: string;
  /** Another origin whose answers carry no CORS headers. */
  crossUrl: string;
  log: RequestLog[];
  /** Paths (without query) that drop their connection after `bytes` body bytes, `times` times. */
  drops: Map<string, { bytes: number; times: number }>;
  close(): Promise<void>;
}

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

function sendBytes(
  req: IncomingMessage,
  res: ServerResponse,
  server: TestServer,
  path: string,
  size: number,
  open: (start: number, end: number) => NodeJS.ReadableStream,
  opts: { ranges: boolean; cors: boolean; type: string },
) {
  const headers: Record<string, string | number> = {
    "Content-Type": opts.type,
    ETag: `"${size}-fixture"`,
    "Last-Modified": new Date(0).toUTCString(),
    "Cache-Control": "no-store",
  };
  if (opts.cors) {
    headers["Access-Control-Allow-Origin"] = "*";
    headers["Access-Control-Expose-Headers"] = "Content-Range, Content-Length, ETag, Last-Modified";
  }
  if (opts.ranges) headers["Accept-Ranges"] = "bytes";
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = opts.ranges ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
  const ifRange = req.headers["if-range"];
  if (range && (!ifRange || ifRange === headers.ETag)) {
    start = Number(range[1]);
    end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
    if (start >= size) {
      res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` }).end();
      server.log.push({ path, range: req.headers.range ?? null, status: 416 });
      return;
    }
    status = 206;
    headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
  }
  headers["Content-Length"] = end - start + 1;
  server.log.push({ path, range: req.headers.range ?? null, status });
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
  const server: TestServer = { url: "", crossUrl: "", log: [], drops: new Map(), close: async () => {} };
  const handle = (cors: boolean) => (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    const path = decodePath(url.pathname);
    if (path === null) return void res.writeHead(400).end("bad request: malformed %-escape");
    const model = /^\/(models|flaky|norange|corrupt)\/(.+)$/.exec(path);
    if (model) {
      const file = modelFile(model[2]);
      if (!file) {
        server.log.push({ path, range: req.headers.range ?? null, status: 404 });
        return void res.writeHead(404, { "Access-Control-Allow-Origin": "*" }).end("not found");
      }
      if (model[1] === "corrupt") {
        const bytes = corrupt(file);
        return sendBytes(req, res, server, path, bytes.length, (s, e) => bufferStream(bytes.subarray(s, e + 1)), {
          ranges: true,
          cors,
          type: "application/octet-stream",
        });
      }
      return sendBytes(req, res, server, path, statSync(file).size, (s, e) => createReadStream(file, { start: s, end: e }), {
        ranges: model[1] !== "norange",
        cors,
        type: "application/octet-stream",
      });
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
  const main = await listen(handle(true));
  const cross = await listen(handle(false));
  server.url = `http://127.0.0.1:${(main.address() as AddressInfo).port}`;
  // "localhost" is another origin than 127.0.0.1 for the browser.
  server.crossUrl = `http://localhost:${(cross.address() as AddressInfo).port}`;
  server.close = async () => {
    main.closeAllConnections();
    cross.closeAllConnections();
    await Promise.all([main, cross].map((s) => new Promise((ok) => s.close(ok))));
  };
  return server;
}

function bufferStream(b: Buffer): NodeJS.ReadableStream {
  return Readable.from([b]);
}
