/**
 * The package's end-to-end path in every browser engine (Chromium, Firefox, WebKit): the
 * same tests and assertions in each, one Playwright project per engine
 * (playwright.config.ts). Load over HTTP with progress, the CLI's greedy reply,
 * streaming, abort, the offline cache, typed errors, and the build each engine gets and
 * why: every build it validates passes its kernel self-test, and a broken kernel result
 * (a test-only switch) is caught there.
 */
import { expect } from "@playwright/test";
import { EXPECTED, test } from "./engine-fixtures.js";
import { type Tab, waitFor } from "./engines.mjs";
import { cli, MODEL } from "./helpers.js";
import { startServer, type TestServer } from "./server.js";

let server: TestServer;
test.beforeAll(async () => {
  server = await startServer();
});
test.afterAll(async () => {
  await server.close();
});

const PROMPT = "Write a haiku about the sea.";
let greedy: { text: string; tokens: number[] } | null = null;
/** The CLI's greedy reply to PROMPT, 24 tokens (the reference every engine must give). */
function cliReply() {
  greedy ??= JSON.parse(
    cli("generate", "--model", `tests/fixtures/${MODEL}`, "--prompt", PROMPT, "--chat", "--json", "-n", "24"),
  );
  return greedy!;
}

const pageReady = (tab: Tab) => waitFor(tab, () => document.title === "ready", undefined, 30_000, "the test page");

async function open(tab: Tab, s: TestServer) {
  await tab.goto(`${s.url}/`);
  await pageReady(tab);
}

test.beforeEach(async ({ tab }) => {
  server.reset();
  await open(tab, server);
});

test("loads over HTTP with progress, streams the CLI's greedy reply, and says which build runs and why", async ({
  tab,
}) => {
  const expected = cliReply();
  const r = await tab.evaluate(
    async ({ url, prompt }) => {
      const { CreateEngine } = (window as any).bitnet;
      const progress: any[] = [];
      const engine = await CreateEngine({
        model: url,
        onProgress: (p: any) => progress.push({ phase: p.phase, loaded: p.loaded, total: p.total }),
        rangeChunkBytes: 256 << 10,
        cache: false,
      });
      const messages = [{ role: "user", content: prompt }];
      const plain = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
      await engine.resetChat();
      const pieces: string[] = [];
      let finish = null;
      for await (const c of await engine.chat.completions.create({
        messages,
        temperature: 0,
        max_tokens: 24,
        stream: true,
      })) {
        if (c.choices[0].delta.content) pieces.push(c.choices[0].delta.content);
        finish = c.choices[0].finish_reason ?? finish;
      }
      await engine.unload();
      return {
        progress,
        text: plain.choices[0].message.content,
        usage: plain.usage,
        pieces,
        finish,
        load: { bytes: engine.load.bytes, source: engine.load.source, buildChoice: engine.load.buildChoice },
        backend: engine.backend,
      };
    },
    { url: `${server.url}/models/${MODEL}`, prompt: PROMPT },
  );
  const bytes = r.progress.map((p: any) => p.loaded);
  expect(bytes).toEqual([...bytes].sort((a: number, b: number) => a - b));
  expect(r.progress.some((p: any) => p.phase === "download" && p.total === r.load.bytes)).toBe(true);
  expect(r.progress.at(-1).phase).toBe("ready");
  expect(server.log.filter((l) => l.status === 206).length).toBeGreaterThan(1);
  expect(r.load.source).toBe("network");

  const want = EXPECTED[tab.engine];
  expect(r.backend).toEqual({ kind: "wasm", build: want.build, threads: 1 });
  // The test page is not cross-origin isolated: the -threads builds are passed over for that.
  const passed = Object.fromEntries(r.load.buildChoice.passedOver.map((p: any) => [p.build, p.why]));
  expect(passed["relaxed-threads"]).toBeDefined();
  expect(passed["simd128-threads"]).toBeDefined();
  if (want.build === "simd128") {
    expect(passed.relaxed).toBe("this browser's WebAssembly does not validate relaxed-simd");
  } else {
    expect(passed.relaxed).toBeUndefined();
  }
  expect(r.load.buildChoice.reason).toBe("the fastest build that runs here");

  expect(r.text).toBe(expected.text);
  expect(r.usage.completion_tokens).toBe(expected.tokens.length);
  expect(r.pieces.join("")).toBe(expected.text);
  expect(r.pieces.length).toBeGreaterThan(3);
  expect(r.finish).toBe("length");
});

test("every build the engine validates passes its kernel self-test and gives the CLI's reply", async ({ tab }) => {
  const expected = cliReply();
  const r = await tab.evaluate(
    async ({ url, prompt }) => {
      const { CreateEngine } = (window as any).bitnet;
      const out: Record<string, any> = {};
      for (const wasmVariant of ["relaxed", "simd128", "scalar"]) {
        try {
          const engine = await CreateEngine({ model: url, wasmVariant, cache: false });
          const c = await engine.chat.completions.create({
            messages: [{ role: "user", content: prompt }],
            temperature: 0,
            max_tokens: 24,
          });
          out[wasmVariant] = { text: c.choices[0].message.content, build: engine.backend.build };
          await engine.unload();
        } catch (e: any) {
          out[wasmVariant] = { kind: e.kind, message: e.message };
        }
      }
      return out;
    },
    { url: `${server.url}/models/${MODEL}`, prompt: PROMPT },
  );
  for (const build of ["relaxed", "simd128", "scalar"]) {
    if (EXPECTED[tab.engine].validates.includes(build)) {
      expect(r[build], build).toEqual({ text: expected.text, build });
    } else {
      // Asked for by name, a build the engine cannot run is a typed error, never a hang.
      expect(r[build], build).toEqual({
        kind: "unsupported-device",
        message: `the ${build} build does not run in this browser: its WebAssembly does not validate relaxed-simd`,
      });
    }
  }
});

test("a kernel result broken on purpose fails the self-test: auto passes that build over and says why", async ({
  tab,
}) => {
  const want = EXPECTED[tab.engine];
  const r = await tab.evaluate(
    async ({ url, broken }) => {
      const { CreateEngine } = (window as any).bitnet;
      const engine = await CreateEngine({ model: url, cache: false, testOnlyBreakSelfTestOf: broken });
      const c = await engine.chat.completions.create({
        messages: [{ role: "user", content: "Hi" }],
        temperature: 0,
        max_tokens: 8,
      });
      await engine.unload();
      let forced: any = null;
      try {
        await CreateEngine({ model: url, cache: false, wasmVariant: broken, testOnlyBreakSelfTestOf: broken });
      } catch (e: any) {
        forced = { kind: e.kind, message: e.message };
      }
      return {
        build: engine.backend.build,
        choice: engine.load.buildChoice,
        text: c.choices[0].message.content,
        forced,
      };
    },
    { url: `${server.url}/models/${MODEL}`, broken: want.build },
  );
  // The engine's own best build is the one broken; the next one down runs and answers.
  expect(r.build).toBe(want.build === "relaxed" ? "simd128" : "scalar");
  const why = r.choice.passedOver.find((p: any) => p.build === want.build)?.why;
  expect(why).toContain("kernel self-test failed");
  expect(r.text.length).toBeGreaterThan(0);
  // Asked for by name, the broken build is an error that says so.
  expect(r.forced.message).toContain("kernel self-test failed");
});

test("abort stops prefill and decode, and the next request runs", async ({ tab }) => {
  const r = await tab.evaluate(async (url) => {
    const { CreateEngine } = (window as any).bitnet;
    const engine = await CreateEngine({ model: url, prefillChunk: 2, cache: false });
    const ac1 = new AbortController();
    let prefillSteps = 0;
    let lastStep = [0, 0];
    const inPrefill = await engine.chat.completions.create({
      messages: [{ role: "user", content: "tell me everything about ".repeat(40) }],
      max_tokens: 50,
      signal: ac1.signal,
      onPrefill: (done: number, total: number) => {
        lastStep = [done, total];
        prefillSteps += 1;
        if (prefillSteps === 3) ac1.abort();
      },
    });
    const ac2 = new AbortController();
    const pieces: string[] = [];
    let finish = null;
    for await (const c of await engine.chat.completions.create({
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
      max_tokens: 200,
      stream: true,
      signal: ac2.signal,
    })) {
      if (c.choices[0].delta.content) pieces.push(c.choices[0].delta.content);
      if (pieces.length === 3) ac2.abort();
      finish = c.choices[0].finish_reason ?? finish;
    }
    const next = await engine.chat.completions.create({
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
      max_tokens: 4,
    });
    await engine.unload();
    return {
      prefill: { finish: inPrefill.choices[0].finish_reason, tokens: inPrefill.usage.completion_tokens, lastStep },
      decode: { finish, pieces: pieces.length },
      next: next.usage.completion_tokens,
    };
  }, `${server.url}/models/${MODEL}`);
  // A few more steps may run while the abort message travels; the prompt is never finished.
  expect(r.prefill.finish).toBe("abort");
  expect(r.prefill.tokens).toBe(0);
  const [done, total] = r.prefill.lastStep;
  expect(done).toBeGreaterThanOrEqual(6);
  expect(done).toBeLessThan(total);
  expect(r.decode.finish).toBe("abort");
  expect(r.decode.pieces).toBeLessThan(40);
  expect(r.next).toBe(4);
});

test("a model downloaded once loads from the offline cache when the network fails, or the load says why not", async ({
  tab,
}) => {
  const url = `${server.url}/models/${MODEL}`;
  const first = await tab.evaluate(async (url) => {
    const engine = await (window as any).bitnet.CreateEngine({ model: url });
    await engine.unload();
    return { source: engine.load.source, bytes: engine.load.bytes, cacheError: engine.load.cacheError ?? null };
  }, url);
  expect(first.source).toBe("network");
  // The model's host goes away (every request to it fails); the page itself still loads.
  server.log.length = 0;
  server.offlineModels = true;
  await tab.reload();
  await pageReady(tab);
  const r = await tab.evaluate(async (url) => {
    const { CreateEngine, listCachedModels } = (window as any).bitnet;
    try {
      const engine = await CreateEngine({ model: url });
      const c = await engine.chat.completions.create({
        messages: [{ role: "user", content: "Hi" }],
        temperature: 0,
        max_tokens: 8,
      });
      await engine.unload();
      return { source: engine.load.source, text: c.choices[0].message.content, listed: await listCachedModels() };
    } catch (e: any) {
      return { error: e.kind, listed: await listCachedModels() };
    }
  }, url);
  if (EXPECTED[tab.engine].offlineCache) {
    expect(first.cacheError).toBeNull();
    expect(r.source).toBe("cache");
    expect(r.text.length).toBeGreaterThan(0);
    expect(r.listed).toEqual([expect.objectContaining({ url, complete: true, bytes: first.bytes })]);
    expect(server.log.filter((l) => l.path.startsWith("/models/") && l.status !== 0)).toEqual([]);
  } else {
    // No storage for it: the first load said so, and the second needs the network.
    expect(first.cacheError).toEqual({
      kind: "unsupported-device",
      message:
        "this browser gives the page no origin private file system (navigator.storage.getDirectory), so the model is not kept offline",
    });
    expect(r).toEqual({ error: "network", listed: [] });
  }
});

test("the exact heads read the offline copy: the CLI's greedy reply in the small heads' memory, or why not", async ({
  tab,
}) => {
  const expected = cliReply();
  const r = await tab.evaluate(
    async ({ url, prompt }) => {
      const { CreateEngine, deleteCachedModel } = (window as any).bitnet;
      await deleteCachedModel(url).catch(() => {});
      const runs: any = {};
      for (const head of ["int8-exact", "int4-exact"]) {
        try {
          const engine = await CreateEngine({ model: url, head });
          const c = await engine.chat.completions.create({
            messages: [{ role: "user", content: prompt }],
            temperature: 0,
            max_tokens: 24,
          });
          await engine.unload();
          runs[head] = { text: c.choices[0].message.content, head: engine.load.info.head, source: engine.load.source };
        } catch (e: any) {
          runs[head] = { error: e.kind };
        }
      }
      await deleteCachedModel(url).catch(() => {});
      return runs;
    },
    { url: `${server.url}/models/${MODEL}`, prompt: PROMPT },
  );
  if (EXPECTED[tab.engine].offlineCache) {
    expect(r["int8-exact"]).toEqual({ text: expected.text, head: "int8-exact", source: "network" });
    // The second load reads the copy the first one kept, and its head reads the same copy.
    expect(r["int4-exact"]).toEqual({ text: expected.text, head: "int4-exact", source: "cache" });
  } else {
    // No origin private file system: no copy to read the float rows from.
    expect(r).toEqual({ "int8-exact": { error: "io" }, "int4-exact": { error: "io" } });
  }
});

test("a corrupt or missing model is a typed error, nothing is kept, and the next load works", async ({ tab }) => {
  const r = await tab.evaluate(
    async ({ base, model }) => {
      const { CreateEngine, listCachedModels } = (window as any).bitnet;
      const attempt = async (opts: any) => {
        try {
          const e = await CreateEngine(opts);
          await e.unload();
          return "loaded";
        } catch (e: any) {
          return { name: e.name, kind: e.kind, status: e.status ?? null };
        }
      };
      return {
        corrupt: await attempt({ model: `${base}/corrupt/${model}` }),
        notFound: await attempt({ model: `${base}/models/missing.gguf` }),
        listed: await listCachedModels(),
        after: await attempt({ model: `${base}/models/${model}`, cache: false }),
      };
    },
    { base: server.url, model: MODEL },
  );
  expect(r.corrupt).toEqual({ name: "BitnetError", kind: "corrupt-model", status: null });
  expect(r.notFound).toEqual({ name: "BitnetError", kind: "not-found", status: 404 });
  expect(r.listed).toEqual([]);
  expect(r.after).toBe("loaded");
});

test("threads on a cross-origin-isolated page where the engine gives a shared memory, else one thread and why", async ({
  tab,
}) => {
  const isolated = await startServer({ isolated: true });
  try {
    await open(tab, isolated);
    const r = await tab.evaluate(
      async ({ url, prompt, broken }) => {
        const { CreateEngine } = (window as any).bitnet;
        const engine = await CreateEngine({ model: url, cache: false, threads: 2 });
        const c = await engine.chat.completions.create({
          messages: [{ role: "user", content: prompt }],
          temperature: 0,
          max_tokens: 24,
        });
        await engine.unload();
        // The engine's best threads build failing its self-test.
        const fallback = await CreateEngine({ model: url, cache: false, threads: 2, testOnlyBreakSelfTestOf: broken });
        await fallback.unload();
        return {
          isolated: self.crossOriginIsolated === true,
          backend: engine.backend,
          threadChoice: engine.load.threadChoice.reason,
          text: c.choices[0].message.content,
          fallback: {
            backend: fallback.backend,
            passedOver: fallback.load.buildChoice.passedOver.map((p: any) => p.build),
          },
        };
      },
      { url: `${isolated.url}/models/${MODEL}`, prompt: PROMPT, broken: `${EXPECTED[tab.engine].build}-threads` },
    );
    expect(r.text).toBe(cliReply().text);
    const want = EXPECTED[tab.engine];
    // COOP + COEP `require-corp`, which every engine supports (WebKit has no `credentialless`).
    expect(r.isolated).toBe(true);
    expect(r.backend).toEqual({ kind: "wasm", build: `${want.build}-threads`, threads: 2 });
    expect(r.threadChoice).toBe("2 threads were asked for");
    // The next build down runs: SIMD128 on the pool, or (WebKit, whose best was broken) one thread.
    expect(r.fallback.backend).toEqual(
      want.build === "relaxed"
        ? { kind: "wasm", build: "simd128-threads", threads: 2 }
        : { kind: "wasm", build: "simd128", threads: 1 },
    );
    // Every faster build, fastest first: those left out before trying, and the one that failed.
    expect(r.fallback.passedOver).toEqual(
      want.build === "relaxed" ? ["relaxed-threads"] : ["relaxed-threads", "simd128-threads", "relaxed"],
    );
  } finally {
    await isolated.close();
  }
});
