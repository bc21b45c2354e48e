// npm run bench:load [-- --model FILE.gguf] [--runs 3]
// How fast a model streams into the wasm engine and how much memory that takes:
//   load-http     the model served by a local HTTP server (another process), read with
//                 fetch as a stream and pushed chunk by chunk, as the browser worker does;
//                 peak RSS against file size + KV cache (target ≤ 1.1×), once per LM
//                 head ("file": as stored; "int8": built while the file streams in, so
//                 its peak should sit below the float head's by half the head's bytes).
//   parse-memory  the file already in memory, pushed in 1 MiB chunks: into fresh wasm
//                 memory (cold: bounded by page faults, compared with a plain copy into
//                 fresh wasm memory) and into reused memory (warm: the parser's own rate;
//                 target ≥ 1 GB/s).
// Each run is a fresh process (wasm memory is never given back). Without --model it
// synthesizes the 2B4T-shaped I2_S model with the native CLI. One JSON line per result.
import { execFileSync, spawn } from "node:child_process";
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function engineModule() {
  const dir = path.join(root, "dist/wasm/simd128");
  const wasm = await import(path.join(dir, "bitnet_web.js"));
  wasm.initSync({ module: readFileSync(path.join(dir, "bitnet_web_bg.wasm")) });
  return wasm;
}

// Child modes: one measurement each.
if (args[0] === "--serve") {
  const file = args[1];
  const size = statSync(file).size;
  const server = createServer((_req, res) => {
    res.writeHead(200, { "Content-Length": size, "Content-Type": "application/octet-stream" });
    createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
  });
  server.listen(0, "127.0.0.1", () => console.log(server.address().port));
} else if (args[0] === "--http") {
  const [, url, nCtx, head] = args;
  const wasm = await engineModule();
  // What the process holds before the model (Node itself, the wasm module).
  const base = process.memoryUsage.rss();
  let peak = base;
  const t0 = performance.now();
  const resp = await fetch(url);
  const size = Number(resp.headers.get("Content-Length"));
  const engine = new wasm.Engine({ expectedBytes: size, nCtx: Number(nCtx), head });
  let n = 0;
  for await (const chunk of resp.body) {
    engine.push(chunk);
    // Sampling RSS costs a syscall: every 64th chunk is enough to see the peak.
    if ((n++ & 63) === 0) peak = Math.max(peak, process.memoryUsage.rss());
  }
  const info = engine.finish();
  const s = (performance.now() - t0) / 1000;
  peak = Math.max(peak, process.memoryUsage.rss());
  console.log(
    JSON.stringify({
      seconds: s,
      bytes: size,
      peak_rss_bytes: peak,
      base_rss_bytes: base,
      kv_cache_bytes: info.kvCacheBytes,
      weights_bytes: info.weightsBytes,
      wasm_memory_bytes: engine.stats().wasmMemoryBytes,
    }),
  );
} else if (args[0] === "--memory") {
  const wasm = await engineModule();
  const bytes = readFileSync(args[1]);
  const load = () => {
    const engine = new wasm.Engine({ expectedBytes: bytes.length, nCtx: 16 });
    const t0 = performance.now();
    for (let i = 0; i < bytes.length; i += 1 << 20) engine.push(bytes.subarray(i, i + (1 << 20)));
    const pushed = performance.now();
    engine.finish();
    const done = performance.now();
    engine.free();
    return [(pushed - t0) / 1000, (done - pushed) / 1000];
  };
  // Cold: wasm memory is new, so every page is faulted in on first write. Warm: a second
  // model in the same instance reuses the freed pages (the parser's own rate).
  const [cold, coldFinish] = load();
  const [warm, warmFinish] = load();
  // The floor under the cold figure: copying the same bytes into fresh wasm memory.
  const mem = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
  mem.grow(Math.ceil(bytes.length / 65536));
  const view = new Uint8Array(mem.buffer);
  const t0 = performance.now();
  for (let i = 0; i < bytes.length; i += 1 << 20) view.set(bytes.subarray(i, i + (1 << 20)), i);
  const copy = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ bytes: bytes.length, cold, coldFinish, warm, warmFinish, copy }));
} else {
  const runs = Number(opt("runs", 3));
  const nCtx = Number(opt("n-ctx", 2048));
  let model = opt("model");
  if (!model) {
    const cli = path.join(root, "target/release/bitnet");
    if (!existsSync(cli))
      execFileSync("cargo", ["build", "--release", "--locked", "-q", "-p", "bitnet-cli"], {
        cwd: root,
        stdio: "inherit",
      });
    mkdirSync(path.join(root, "target/bench-models"), { recursive: true });
    model = path.join(root, "target/bench-models/2b4t-I2_S.gguf");
    if (!existsSync(model))
      execFileSync(cli, ["synth", "--shape", "2b4t", "--wtype", "I2_S", "--seed", "1", "--out", model], {
        stdio: "inherit",
      });
  }
  const self = fileURLToPath(import.meta.url);
  const child = (...a) => JSON.parse(execFileSync(process.execPath, [self, ...a], { maxBuffer: 1 << 20 }).toString());

  const server = spawn(process.execPath, [self, "--serve", model], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise((ok) => server.stdout.once("data", (d) => ok(String(d).trim())));
  for (const head of ["file", "int8"]) {
    const http = [];
    for (let i = 0; i < runs; i++)
      http.push(child("--http", `http://127.0.0.1:${port}/model.gguf`, String(nCtx), head));
    const last = http[http.length - 1];
    const peak = median(http.map((r) => r.peak_rss_bytes));
    const loadPeak = median(http.map((r) => r.peak_rss_bytes - r.base_rss_bytes));
    console.log(
      JSON.stringify({
        bench: "load-http",
        model: path.basename(model),
        head,
        bytes: last.bytes,
        weights_bytes: last.weights_bytes,
        n_ctx: nCtx,
        kv_cache_bytes: last.kv_cache_bytes,
        seconds: median(http.map((r) => r.seconds)),
        GBps: last.bytes / median(http.map((r) => r.seconds)) / 1e9,
        peak_rss_bytes: peak,
        // Memory the load added, against the budget of 1.1 × file size + KV cache.
        load_peak_bytes: loadPeak,
        load_peak_vs_budget: loadPeak / (1.1 * last.bytes + last.kv_cache_bytes),
        load_peak_vs_file_plus_kv: loadPeak / (last.bytes + last.kv_cache_bytes),
        wasm_memory_bytes: last.wasm_memory_bytes,
        runs,
      }),
    );
  }
  server.kill();
  const mem = [];
  for (let i = 0; i < runs; i++) mem.push(child("--memory", model));
  const m = (k) => median(mem.map((r) => r[k]));
  const gbps = (k) => mem[0].bytes / m(k) / 1e9;
  console.log(
    JSON.stringify({
      bench: "parse-memory",
      model: path.basename(model),
      bytes: mem[0].bytes,
      cold_GBps: gbps("cold"),
      warm_GBps: gbps("warm"),
      fresh_memory_copy_GBps: gbps("copy"),
      cold_vs_copy: m("copy") / m("cold"),
      finish_seconds_cold: m("coldFinish"),
      finish_seconds_warm: m("warmFinish"),
      runs,
    }),
  );
}
