// npm run bench [-- --model FILE.gguf] [--prompt-tokens 64] [--gen-tokens 64] [--runs 3] [--threads N]
// npm run bench -- --browser [--prompt-tokens 64] [--gen-tokens 64]: the package in Chromium,
//   Firefox and WebKit instead (tests/browser/bench/engines.bench.ts, also `npm run
//   bench:browser`; BENCH_ENGINES="webkit" runs one).
// Runs each model under Node (24 or later) with the scalar, SIMD128 and relaxed-SIMD wasm builds and
// natively, side by side, one JSON line each. Without --model it synthesizes the
// 2B4T-shaped I2_S and TQ2_0 models (1.2 GB each) with the native CLI. bitnet.c runs
// beside them where scripts/build-bitnet-c.sh has built it (--peers none skips it).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const promptTokens = Number(opt("prompt-tokens", 64));
const genTokens = Number(opt("gen-tokens", 64));
const runs = Number(opt("runs", 3));
if (args.includes("--browser")) {
  execFileSync("npx", ["playwright", "test", "-c", "tests/browser/bench/playwright.config.ts"], {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, BENCH_PROMPT: String(promptTokens), BENCH_GEN: String(genTokens) },
  });
  process.exit(0);
}
// The scalar build is an order of magnitude slower: fewer tokens, one run, same per-token rates.
const scalarTokens = Number(opt("scalar-tokens", 8));
const variants = opt(
  "variants",
  "native,wasm-scalar,wasm-simd128,wasm-relaxed,wasm-simd128-threads,wasm-relaxed-threads",
).split(",");
// Threads of the `-threads` builds (the single-thread targets are measured on the others).
const poolThreads = Number(opt("threads", Math.min(availableParallelism(), 8)));
// LM heads to try: the file's (F16), the int8 copy, and the int8 / int4 copies whose best
// candidates are rescored from the file (natively only: in wasm they read the browser's
// offline copy, which Node has not; `--browser` measures them in the package).
const heads = opt("heads", "file,int8,int8-exact,int4-exact").split(",");

const cli = path.join(root, "target/release/bitnet");
if (!existsSync(cli) || variants.includes("native")) {
  execFileSync("cargo", ["build", "--release", "--locked", "-q", "-p", "bitnet-cli"], { cwd: root, stdio: "inherit" });
}
const models = args.includes("--model") ? [path.resolve(opt("model"))] : [];
if (models.length === 0) {
  const dir = path.join(root, "target/bench-models");
  mkdirSync(dir, { recursive: true });
  for (const w of ["I2_S", "TQ2_0"]) {
    const file = path.join(dir, `2b4t-${w}.gguf`);
    if (!existsSync(file))
      execFileSync(cli, ["synth", "--shape", "2b4t", "--wtype", w, "--seed", "1", "--out", file], { stdio: "inherit" });
    models.push(file);
  }
}

// Every wasm build runs on one V8, and a recent one: Node 20's V8 (11.3) has only a
// pre-standard relaxed SIMD (other dot-product results), and V8 before 13.6 (Node 24)
// turns the relaxed dot product into three instructions where current browsers emit one
// VNNI `vpdpbusd`. On an older Node, a Node 24 from the npm registry runs them.
const [v8Major, v8Minor] = process.versions.v8.split(".").map(Number);
const wasmNode = v8Major * 100 + v8Minor >= 1306 ? [process.execPath] : ["npx", "--yes", "node@24"];

// bitnet.c (target/peers/bitnet.c, from scripts/build-bitnet-c.sh): natively, and its
// WASI builds under the same Node as our wasm. Its relaxed build puts signed activations in
// the 7-bit operand of the relaxed dot product, which x86 engines compute differently
// (other tokens than its native build); the exact one replaces that dot product.
const peerDir = path.join(root, "target/peers/bitnet.c");
const peers = (
  opt("peers", "") === "none"
    ? []
    : [
        { name: "bitnet.c-native", file: path.join(peerDir, "bitnet") },
        {
          name: "bitnet.c-wasm-relaxed",
          file: path.join(peerDir, "bitnet-relaxed.wasm"),
          note: "wrong results on x86",
        },
        { name: "bitnet.c-wasm-exact", file: path.join(peerDir, "bitnet-exact.wasm") },
      ]
).filter((p) => existsSync(p.file));

const peerCommit = peers.length ? readFileSync(path.join(peerDir, "commit"), "utf8").trim().slice(0, 7) : null;

/** One peer on `model` at one thread: the same token counts as ours (the prompt given as
 * token ids), one untimed run first; medians of its speeds as it prints them (decode:
 * tokens generated over the generation's time; prefill: the prompt over its time). */
function runPeer(peer, model) {
  const ids = Array.from({ length: promptTokens }, (_, i) => 1000 + i).join(",");
  const args = [
    ...["--prompt-token-ids", ids, "-n", String(genTokens), "-t", "1"],
    ...["--maxseq", String(promptTokens + genTokens + 16), "--repeat-penalty", "1.0", "--quiet"],
    ...["--benchmark-warmup-runs", "1", "--benchmark-runs", String(runs)],
  ];
  const [cmd, ...pre] = peer.file.endsWith(".wasm")
    ? [...wasmNode, path.join(root, "scripts/bench-peer-wasi.mjs"), peer.file, model]
    : [peer.file, model];
  // A synthetic model repeats itself, and bitnet.c would stop at the first loop.
  const r = spawnSync(cmd, [...pre, ...args], {
    env: { ...process.env, BN_DISABLE_LOOP_ABORT: "1" },
    maxBuffer: 16 << 20,
  });
  const log = `${r.stdout}${r.stderr}`;
  const samples = [...log.matchAll(/Benchmark sample \| run=\d+ tokens=(\d+) tok\/s=([\d.]+) prompt_ms=([\d.]+)/g)];
  if (r.status !== 0 || samples.length === 0)
    return { skipped: `exit ${r.status}: ${log.trim().split("\n").slice(-3).join(" | ")}` };
  const median = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
  return {
    prefill_tps: median(samples.map((m) => promptTokens / (Number(m[3]) / 1000))),
    decode_tps: median(samples.map((m) => Number(m[2]))),
  };
}

for (const model of models) {
  let bandwidth = null;
  for (const head of heads)
    for (const v of variants) {
      if (v === "wasm-scalar" && head !== "file") continue;
      if (v !== "native" && head.endsWith("-exact")) continue;
      let line;
      if (v === "native") {
        const r = JSON.parse(
          execFileSync(cli, [
            "bench",
            "--model",
            model,
            "--prompt-tokens",
            String(promptTokens),
            "--gen-tokens",
            String(genTokens),
            "--runs",
            String(runs),
            "--threads",
            "1",
            "--head",
            head,
          ]).toString(),
        );
        line = {
          backend: "native",
          model: path.basename(model),
          threads: 1,
          prefill_tps: r.prefill_tps,
          decode_tps: r.decode_tps,
          kernels: r.backend,
          head,
          read_bandwidth_GBps: r.read_bandwidth_GBps,
        };
        bandwidth = r.read_bandwidth_GBps;
      } else {
        const variant = v.replace("wasm-", "");
        const [p, g, n] = variant === "scalar" ? [scalarTokens, scalarTokens, 1] : [promptTokens, genTokens, runs];
        // A fresh process per variant: wasm memory is never returned to the OS.
        const [cmd, ...pre] = wasmNode;
        const threads = variant.endsWith("-threads") ? poolThreads : 1;
        const out = execFileSync(
          cmd,
          [
            ...pre,
            path.join(root, "scripts/bench-wasm.mjs"),
            variant,
            model,
            String(p),
            String(g),
            String(n),
            head,
            String(threads),
          ],
          { maxBuffer: 1 << 20 },
        );
        line = { backend: v, model: path.basename(model), ...JSON.parse(out.toString()) };
      }
      console.log(JSON.stringify(line));
    }
  for (const peer of peers) {
    // The read loop of this run, for a model whose native line did not run.
    bandwidth ??= JSON.parse(
      execFileSync(cli, [
        "bench",
        "--model",
        model,
        "--prompt-tokens",
        "1",
        "--gen-tokens",
        "1",
        "--runs",
        "1",
      ]).toString(),
    ).read_bandwidth_GBps;
    const line = {
      backend: peer.name,
      commit: peerCommit,
      model: path.basename(model),
      threads: 1,
      ...runPeer(peer, model),
      ...(peer.note ? { note: peer.note } : {}),
      read_bandwidth_GBps: bandwidth,
    };
    console.log(JSON.stringify(line));
  }
}
