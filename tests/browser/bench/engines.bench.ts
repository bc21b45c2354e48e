/**
 * The package in each browser engine (Chromium, Firefox, WebKit; BENCH_ENGINES="a b"
 * picks some) on the 2B4T-shaped models (I2_S and TQ2_0, synthesized
 * by the CLI into target/bench-models), both LM heads, on one thread, on two threads, with
 * the default (`threads` not given: the pool, one thread per core up to 8, timed against
 * one thread at load) and with the f16 KV cache on the default. One JSON
 * line each, with the native build's decode and the read loop's bandwidth from the same
 * run (`bitnet bench` before the browser lines), so ratios stay meaningful on a shared
 * machine. Each line runs in a freshly started browser, so the memory of the lines before
 * it is not in its peak. `--gen-tokens` etc. come from the environment: BENCH_PROMPT,
 * BENCH_GEN; BENCH_WTYPES ("I2_S TQ2_0") and BENCH_HEADS ("file int8 int8-exact
 * int4-exact") and BENCH_CONFIGS pick fewer lines. The exact heads' lines load with the
 * offline cache on (the head reads its float rows from that copy); the others without it.
 * Chromium runs on a profile on disk, as a user's browser does (BENCH_PROFILE=memory:
 * the off-the-record one).
 */
import { expect, test } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ENGINES, type EngineName, launch, waitFor } from "../engines.mjs";
import { ROOT, startServer } from "../server.js";

const PROMPT_TOKENS = Number(process.env.BENCH_PROMPT ?? 64);
const GEN_TOKENS = Number(process.env.BENCH_GEN ?? 64);
const list = (v: string | undefined, all: string) => (v ?? all).split(/\s+/).filter(Boolean);
const WTYPES = list(process.env.BENCH_WTYPES, "I2_S TQ2_0");
const HEADS = list(process.env.BENCH_HEADS, "file int8 int8-exact int4-exact");
const CLI = join(ROOT, "target/release/bitnet");

function model(wtype: string): string {
  const dir = join(ROOT, "target/bench-models");
  const file = join(dir, `2b4t-${wtype}.gguf`);
  if (!existsSync(CLI))
    execFileSync("cargo", ["build", "--release", "--locked", "-q", "-p", "bitnet-cli"], { cwd: ROOT });
  mkdirSync(dir, { recursive: true });
  if (!existsSync(file))
    execFileSync(CLI, ["synth", "--shape", "2b4t", "--wtype", wtype, "--seed", "1", "--out", file]);
  // The test server serves models from target/browser-fixtures.
  const served = join(ROOT, "target/browser-fixtures", `2b4t-${wtype}.gguf`);
  mkdirSync(join(ROOT, "target/browser-fixtures"), { recursive: true });
  if (!existsSync(served)) linkSync(file, served);
  return file;
}

/** How each engine's page processes (the page and its workers) show in their command line. */
const PAGE_PROCESS: Record<EngineName, RegExp> = {
  chromium: /--type=renderer/,
  firefox: /-contentproc/,
  webkit: /WebKitWebProcess/,
};

const WANTED = (process.env.BENCH_ENGINES?.split(/\s+/).filter(Boolean) ?? ENGINES) as EngineName[];

/** The engine's page processes now. */
function pageProcesses(engine: EngineName): string[] {
  return readdirSync("/proc").filter((pid) => {
    try {
      return /^\d+$/.test(pid) && PAGE_PROCESS[engine].test(readFileSync(`/proc/${pid}/cmdline`, "utf8"));
    } catch {
      return false; // It ended while it was read.
    }
  });
}

/** The largest resident set of `pids`. */
function largestRss(pids: string[]): number {
  let max = 0;
  for (const pid of pids) {
    try {
      const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (kb) max = Math.max(max, Number(kb[1]) * 1024);
    } catch {
      // The process ended while it was read.
    }
  }
  return max;
}

/**
 * Samples the page processes' largest resident set every 0.2 s. Which processes those
 * are is looked up once a second: reading every process's command line five times a
 * second took a fifth of a core from the two the engine runs on.
 */
function rssSampler(engine: EngineName) {
  let pids = pageProcesses(engine);
  let peak = largestRss(pids);
  let ticks = 0;
  const timer = setInterval(() => {
    if (++ticks % 5 === 0) pids = pageProcesses(engine);
    peak = Math.max(peak, largestRss(pids));
  }, 200);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, largestRss(pageProcesses(engine)));
    },
  };
}

/** The lines' thread counts and KV caches: BENCH_CONFIGS="1 default 2 default/f16" (all). */
const CONFIGS = list(process.env.BENCH_CONFIGS, "1 default 2 default/f16").map((c) => {
  const [threads, kvCache = "f32"] = c.split("/");
  return [threads === "default" ? undefined : Number(threads), kvCache] as [number | undefined, string];
});
/** BENCH_PROFILE=memory: Chromium's off-the-record profile (a private window) instead of
 * one on disk, which moves the offline copy into memory and slows its reads. */
const ON_DISK = process.env.BENCH_PROFILE !== "memory";

for (const engine of WANTED)
  test(`decode and prefill in ${engine} beside the native build`, async () => {
    await bench(engine);
  });

async function bench(engine: EngineName) {
  const server = await startServer({ isolated: true });
  try {
    for (const wtype of WTYPES) {
      const file = model(wtype);
      for (const head of HEADS) {
        const native = JSON.parse(
          execFileSync(CLI, [
            ...["bench", "--model", file, "--head", head, "--runs", "1"],
            ...["--prompt-tokens", String(PROMPT_TOKENS), "--gen-tokens", String(GEN_TOKENS)],
          ]).toString(),
        );
        for (const [threads, kvCache] of CONFIGS) {
          const browser = await launch(engine, { onDisk: ON_DISK });
          const tab = await browser.newTab();
          await tab.goto(`${server.url}/`);
          await waitFor(tab, () => document.title === "ready", undefined, 30_000, "the test page");
          // The page's process before the model: the engine's own share is what it adds.
          const baseline = largestRss(pageProcesses(engine));
          const sampler = rssSampler(engine);
          const r = await tab.evaluate(
            async ({ url, head, threads, kvCache, promptTokens, genTokens }) => {
              const { CreateEngine } = (window as any).bitnet;
              const engine = await CreateEngine({
                model: url,
                nCtx: 2048,
                head,
                kvCache,
                cache: head.endsWith("-exact"),
                threads,
              });
              // A prompt of about `promptTokens` tokens; loop guard off so every token is decoded.
              const content = "the sea and the wind ".repeat(Math.ceil(promptTokens / 5)).slice(0, promptTokens * 4);
              const c = await engine.chat.completions.create({
                messages: [{ role: "user", content }],
                temperature: 0,
                max_tokens: genTokens,
                loop_guard: false,
              });
              const out = {
                wasmMemoryBytes: (await engine.stats()).wasmMemoryBytes,
                kvCacheBytes: engine.load.info.kvCacheBytes,
                bytes: engine.load.bytes,
                backend: engine.load.backend,
                threadChoice: engine.load.threadChoice,
                loadMs: engine.load.loadMs,
                usage: c.usage,
                cores: navigator.hardwareConcurrency,
              };
              await engine.unload();
              return out;
            },
            {
              url: `${server.url}/models/2b4t-${wtype}.gguf`,
              head,
              threads,
              kvCache,
              promptTokens: PROMPT_TOKENS,
              genTokens: GEN_TOKENS,
            },
          );
          const peak = sampler.stop();
          await tab.close();
          await browser.close();
          const line = {
            bench: "browser",
            engine: `${engine} ${browser.version}`,
            model: `2b4t-${wtype}`,
            profile: ON_DISK ? "disk" : "memory",
            head,
            threads: threads ?? "default",
            kv_cache: kvCache,
            build: r.backend.build,
            threads_used: r.backend.threads,
            thread_choice: r.threadChoice.reason,
            prompt_tokens: r.usage.prompt_tokens,
            prefill_tokens_per_s: r.usage.prefill_tokens_per_s,
            decode_tokens_per_s: r.usage.decode_tokens_per_s,
            load_ms: r.loadMs,
            native_decode_tokens_per_s: native.decode_tps,
            decode_vs_native: r.usage.decode_tokens_per_s / native.decode_tps,
            read_bandwidth_GBps: native.read_bandwidth_GBps,
            // The page's process at its largest during load and chat (sampled every
            // 0.2 s), against the file plus the KV cache.
            peak_page_rss_bytes: peak,
            peak_vs_file_plus_kv: peak / (r.bytes + r.kvCacheBytes),
            // Beside the peak: the page before the load, and the engine's wasm memory (the
            // model and the whole KV cache, whose positions not yet stored are reserved,
            // not resident).
            page_before_load_rss_bytes: baseline,
            wasm_memory_bytes: r.wasmMemoryBytes,
          };
          console.log(JSON.stringify(line));
          expect(r.usage.completion_tokens).toBe(GEN_TOKENS);
        }
      }
    }
  } finally {
    await server.close();
  }
}
