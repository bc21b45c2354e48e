#!/usr/bin/env node
// Serves the built app (www/dist) the way a static host would, plus what it should add:
// byte ranges (the engine resumes model downloads with them), the Content-Security-Policy
// as a header, and caching that lets a new build's service worker be found at once.
// `node scripts/serve.mjs [dir]`; PORT (default 8080) and HOST (default 127.0.0.1) override.
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".webmanifest": "application/manifest+json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".gguf": "application/octet-stream",
  ".txt": "text/plain; charset=utf-8",
};

// The same policy as index.html's meta tag, plus what only a header can say.
const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; " +
  "img-src 'self' data: blob:; font-src 'self'; connect-src 'self' https: http://localhost:* http://127.0.0.1:*; " +
  "manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Cross-origin isolation gives the engine a shared memory, so it runs on several threads.
// `require-corp`, because WebKit (Safari) has no `credentialless`; models from other
// origins still load, since a CORS-mode fetch needs no Cross-Origin-Resource-Policy.
export const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

/** The request path with its %-escapes decoded, or null when they are not valid UTF-8
 * (`/%E0%A4%A`): such a request gets a 400, never an exception that stops the server. */
export function decodePath(pathname) {
  try {
    return decodeURIComponent(pathname);
  } catch {
    return null;
  }
}

function cacheControl(path) {
  // Hashed file names never change; everything else is revalidated so updates show up.
  return path.includes(`${sep}assets${sep}`) ? "public, max-age=31536000, immutable" : "no-cache";
}

/** Starts the server; resolves with it once it listens. */
export function serve({ root, port = 8080, host = "127.0.0.1" }) {
  const base = resolve(root);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const decoded = decodePath(url.pathname);
    if (decoded === null) {
      res.writeHead(400, { "Content-Type": "text/plain" }).end("bad request: malformed %-escape");
      return;
    }
    let path = join(base, normalize(decoded));
    if (path !== base && !path.startsWith(base + sep)) {
      res.writeHead(403).end();
      return;
    }
    let stat = statOrNull(path);
    if (stat?.isDirectory()) {
      path = join(path, "index.html");
      stat = statOrNull(path);
    }
    if (!stat?.isFile()) {
      // Unknown paths inside the app get the app (it is a single page).
      const isPage = (req.headers.accept ?? "").includes("text/html");
      path = join(base, "index.html");
      stat = isPage ? statOrNull(path) : null;
      if (!stat) {
        res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
        return;
      }
    }
    const headers = {
      "Content-Type": TYPES[extname(path)] ?? "application/octet-stream",
      "Cache-Control": cacheControl(path),
      "Accept-Ranges": "bytes",
      "Last-Modified": stat.mtime.toUTCString(),
      ETag: `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      ...ISOLATION,
    };
    if (extname(path) === ".html") headers["Content-Security-Policy"] = CSP;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
    if (range && (range[1] || range[2])) {
      const start = range[1] ? Number(range[1]) : Math.max(0, stat.size - Number(range[2]));
      const end = range[1] && range[2] ? Math.min(Number(range[2]), stat.size - 1) : stat.size - 1;
      if (start > end || start >= stat.size) {
        res.writeHead(416, { "Content-Range": `bytes */${stat.size}` }).end();
        return;
      }
      res.writeHead(206, {
        ...headers,
        "Content-Length": end - start + 1,
        "Content-Range": `bytes ${start}-${end}/${stat.size}`,
      });
      if (req.method === "HEAD") res.end();
      else createReadStream(path, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { ...headers, "Content-Length": stat.size });
    if (req.method === "HEAD") res.end();
    else createReadStream(path).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, () => ok(server));
  });
}

function statOrNull(p) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = process.argv[2] ?? fileURLToPath(new URL("../dist", import.meta.url));
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? "127.0.0.1";
  serve({ root, port, host }).then(
    (s) => {
      const { port: p } = s.address();
      console.log(`BitNet Chat: http://localhost:${p}/  (serving ${root}; Ctrl+C stops)`);
    },
    (e) => {
      console.error(e.code === "EADDRINUSE" ? `port ${port} is in use: set PORT to another one` : e);
      process.exit(1);
    },
  );
}
