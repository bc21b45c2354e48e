/**
 * The npm package in headless Chromium, used the way a web app uses it: streaming load
 * over HTTP with progress, the OpenAI-style API, abort, the request queue, resumed
 * downloads, the offline cache, local files, split models, and the typed errors.
 */
import { expect, test } from "@playwright/test";
import { cli, MODEL, openPage, splitFixture } from "./helpers.js";
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, statSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startServer, type TestServer } from "./server.js";

let server: TestServer;
test.beforeAll(async () => {
  server = await startServer();
});
test.afterAll(async () => {
  await server.close();
});
test.beforeEach(async ({ page }) => {
  server.reset();
  await openPage(page, server);
});

const PROMPT = "Write a haiku about the sea.";

test("loads over HTTP with progress, streams a chat, and matches the CLI's greedy text", async ({ page }) => {
  const expected = JSON.parse(
    cli("generate", "--model", `tests/fixtures/${MODEL}`, "--prompt", PROMPT, "--chat", "--json", "-n", "24"),
  );
  const r = await page.evaluate(
    async ({ url, prompt }) => {
      const { CreateEngine } = (window as any).bitnet;
      const progress: any[] = [];
      const engine = await CreateEngine({
        model: url,
        onProgress: (p: any) => progress.push(p),
        rangeChunkBytes: 256 << 10,
      });
      const messages = [{ role: "user", content: prompt }];
      const plain = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
      await engine.resetChat();
      const chunks: any[] = [];
      for await (const c of await engine.chat.completions.create({
        messages,
        temperature: 0,
        max_tokens: 24,
        stream: true,
      }))
        chunks.push(c);
      const stats = await engine.stats();
      const tokens = await engine.tokenize("Hello world");
      await engine.unload();
      return { progress, plain, chunks, stats, tokens, load: engine.load, backend: engine.backend };
    },
    { url: `${server.url}/models/${MODEL}`, prompt: PROMPT },
  );
  // Progress: monotonic bytes up to the file size, then parse and ready.
  const size = r.load.bytes;
  const bytes = r.progress.map((p: any) => p.loaded);
  expect(bytes).toEqual([...bytes].sort((a, b) => a - b));
  expect(r.progress.at(-1).phase).toBe("ready");
  expect(r.progress.some((p: any) => p.phase === "download" && p.total === size && p.rate >= 0)).toBe(true);
  expect(r.load.source).toBe("network");
  // Several Range requests of 256 KiB each.
  expect(server.log.filter((l) => l.status === 206).length).toBeGreaterThan(1);
  // Relaxed SIMD where the browser has it (Chromium does).
  expect(r.backend).toEqual({ kind: "wasm", build: "relaxed", threads: 1 });

  // The OpenAI-style answer equals the CLI's for the same prompt.
  expect(r.plain.object).toBe("chat.completion");
  expect(r.plain.choices[0].message.content).toBe(expected.text);
  expect(r.plain.usage.completion_tokens).toBe(expected.tokens.length);
  expect(r.plain.usage.prefill_tokens_per_s).toBeGreaterThan(0);
  expect(r.plain.usage.time_to_first_token_ms).toBeGreaterThan(0);
  // Streaming: a role chunk, content chunks that add up to the same text, usage at the end.
  expect(r.chunks[0].choices[0].delta.role).toBe("assistant");
  expect(r.chunks.map((c: any) => c.choices[0].delta.content ?? "").join("")).toBe(expected.text);
  expect(r.chunks.filter((c: any) => c.choices[0].delta.content).length).toBeGreaterThan(3);
  expect(r.chunks.at(-1).choices[0].finish_reason).toBe(r.plain.choices[0].finish_reason);
  expect(r.chunks.at(-1).usage.completion_tokens).toBe(expected.tokens.length);
  expect(r.stats.wasmMemoryBytes).toBeGreaterThan(size);
  expect(r.tokens.length).toBeGreaterThan(1);
});

test("the loop guard and the repetition window cross the worker boundary as the CLI's flags do", async ({ page }) => {
  const gen = (...flags: string[]) =>
    JSON.parse(
      cli(
        "generate",
        "--model",
        `tests/fixtures/${MODEL}`,
        "--prompt",
        "Hello",
        "--chat",
        "--json",
        "-n",
        "120",
        ...flags,
      ),
    );
  // The fixture falls into a loop under greedy decoding: the guard ends it early.
  const guarded = gen();
  const unguarded = gen("--no-loop-guard");
  const window64 = gen("--no-loop-guard", "--repeat-penalty", "1.3");
  const window4 = gen("--no-loop-guard", "--repeat-penalty", "1.3", "--repeat-window", "4");
  expect(guarded.finish_reason).toBe("loop");
  expect(unguarded.finish_reason).toBe("length");
  expect(window4.text).not.toBe(window64.text);
  const r = await page.evaluate(
    async ({ url }) => {
      const { CreateEngine } = (window as any).bitnet;
      const engine = await CreateEngine({ model: url });
      const ask = async (o: object) => {
        const messages = [{ role: "user", content: "Hello" }];
        const c = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 120, ...o });
        await engine.resetChat();
        return { text: c.choices[0].message.content, finish: c.choices[0].finish_reason };
      };
      const out = {
        guarded: await ask({}),
        unguarded: await ask({ loop_guard: false }),
        window64: await ask({ loop_guard: false, repetition_penalty: 1.3 }),
        window4: await ask({ loop_guard: false, repetition_penalty: 1.3, repeat_window: 4 }),
      };
      await engine.unload();
      return out;
    },
    { url: `${server.url}/models/${MODEL}` },
  );
  expect(r.guarded).toEqual({ text: guarded.text, finish: "loop" });
  expect(r.unguarded).toEqual({ text: unguarded.text, finish: "length" });
  expect(r.window64.text).toBe(window64.text);
  expect(r.window4.text).toBe(window4.text);
});

test("the int8 head and the f16 KV cache answer as the CLI's flags do, in less memory", async ({ page }) => {
  const expected = JSON.parse(
    cli(
      ...["generate", "--model", `tests/fixtures/${MODEL}`, "--prompt", PROMPT, "--chat", "--json", "-n", "24"],
      ...["--head", "int8", "--kv-cache", "f16"],
    ),
  );
  const r = await page.evaluate(
    async ({ url, prompt }) => {
      const { CreateEngine } = (window as any).bitnet;
      const load = async (o: object) => {
        const engine = await CreateEngine({ model: url, nCtx: 256, ...o });
        const messages = [{ role: "user", content: prompt }];
        const c = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
        const info = engine.load.info;
        await engine.unload();
        return { text: c.choices[0].message.content, info };
      };
      return { small: await load({ head: "int8", kvCache: "f16" }), plain: await load({}) };
    },
    { url: `${server.url}/models/${MODEL}`, prompt: PROMPT },
  );
  expect(r.small.text).toBe(expected.text);
  expect(r.small.info.head).toBe("int8");
  expect(r.small.info.kvCache).toBe("f16");
  expect(r.plain.info.kvCache).toBe("f32");
  expect(r.small.info.kvCacheBytes * 2).toBe(r.plain.info.kvCacheBytes);
  expect(r.small.info.weightsBytes).toBeLessThan(r.plain.info.weightsBytes);
});

test("the exact heads answer as the float64 reference does, from the offline copy, in the small heads' memory", async ({
  page,
}) => {
  // The trained model and its numpy float64 forward (tests/fixtures/brown-tiny.ref.json):
  // greedy continuations, exact up to the first step whose top two are within 0.04.
  const ref = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/brown-tiny.ref.json"), "utf8"));
  const cases = ref.cases.map((c: any) => ({ prompt: c.prompt, n: c.greedy_ids.length }));
  const r = await page.evaluate(
    async ({ url, cases }) => {
      const { CreateEngine, deleteCachedModel } = (window as any).bitnet;
      const run = async (o: object) => {
        const engine = await CreateEngine({ model: url, nCtx: 128, device: "wasm", ...o });
        const tokens = [];
        for (const c of cases)
          tokens.push(
            (await engine.completion(c.prompt, { temperature: 0, max_tokens: c.n, loop_guard: false })).tokens,
          );
        return { engine, tokens, info: engine.load.info, source: engine.load.source };
      };
      const error = (p: Promise<unknown>) =>
        p.then(() => null).catch((e: any) => ({ kind: e.kind, message: e.message }));
      await deleteCachedModel(url);
      const first = await run({ head: "int8-exact" });
      // The copy is open for the float rows while the model runs: it cannot go.
      const deleteWhileLoaded = await error(deleteCachedModel(url));
      await first.engine.unload();
      // The 4-bit head, from the copy the first load kept.
      const again = await run({ head: "int4-exact" });
      await again.engine.unload();
      const file = await run({ head: "file", cache: false });
      await file.engine.unload();
      const int8 = await run({ head: "int8", cache: false });
      await int8.engine.unload();
      const noCopy = await error(CreateEngine({ model: url, head: "int4-exact", cache: false }));
      const deleted = await deleteCachedModel(url);
      const strip = (x: any) => ({ tokens: x.tokens, info: x.info, source: x.source });
      return {
        first: strip(first),
        again: strip(again),
        file: strip(file),
        int8: strip(int8),
        deleteWhileLoaded,
        noCopy,
        deleted,
      };
    },
    { url: `${server.url}/models/brown-tiny-I2_S.gguf`, cases },
  );
  expect(r.first.source).toBe("network");
  expect(r.again.source).toBe("cache");
  ref.cases.forEach((c: any, i: number) => {
    for (const run of [r.first, r.again, r.file])
      expect(run.tokens[i].slice(0, c.clear_ids.length)).toEqual(c.clear_ids);
  });
  // The float head's greedy text over every step, not only the clear ones.
  expect(r.first.tokens).toEqual(r.file.tokens);
  expect(r.again.tokens).toEqual(r.file.tokens);
  expect(r.first.info.head).toBe("int8-exact");
  expect(r.first.info.weightsBytes).toBe(r.int8.info.weightsBytes);
  expect(r.first.info.weightsBytes).toBeLessThan(r.file.info.weightsBytes);
  expect(r.again.info.head).toBe("int4-exact");
  expect(r.again.info.weightsBytes).toBeLessThan(r.int8.info.weightsBytes);
  expect(r.deleteWhileLoaded?.kind).toBe("io");
  expect(r.noCopy?.kind).toBe("invalid-argument");
  expect(r.noCopy?.message).toContain("offline copy");
  expect(r.deleted).toBe(true);
});

test("abort works in prefill and in decode, the next request runs, and queued requests never interleave", async ({
  page,
}) => {
  const r = await page.evaluate(async (url) => {
    const { CreateEngine } = (window as any).bitnet;
    const engine = await CreateEngine({ model: url, prefillChunk: 2 });
    const long = [{ role: "user", content: "tell me everything about ".repeat(40) }];
    // Abort while the long prompt is still being prefilled (2 tokens per step).
    const ac1 = new AbortController();
    const prefill: number[][] = [];
    const p1 = engine.chat.completions.create({
      messages: long,
      max_tokens: 50,
      signal: ac1.signal,
      onPrefill: (done: number, total: number) => {
        prefill.push([done, total]);
        if (prefill.length === 3) ac1.abort();
      },
    });
    const inPrefill = await p1;
    // Abort while decoding, after three streamed pieces.
    const ac2 = new AbortController();
    const pieces: string[] = [];
    const short = [{ role: "user", content: "Hi" }];
    for await (const c of await engine.chat.completions.create({
      messages: short,
      temperature: 0,
      max_tokens: 200,
      stream: true,
      signal: ac2.signal,
    })) {
      if (c.choices[0].delta.content) pieces.push(c.choices[0].delta.content);
      if (pieces.length === 3) ac2.abort();
      if (c.choices[0].finish_reason) pieces.push(`<${c.choices[0].finish_reason}>`);
    }
    // The engine takes the next request right away.
    await engine.resetChat();
    const a = [{ role: "user", content: "First question" }];
    const b = [{ role: "user", content: "Second question" }];
    const alone = [];
    for (const m of [a, b]) {
      alone.push(
        (await engine.chat.completions.create({ messages: m, temperature: 0, max_tokens: 12 })).choices[0].message
          .content,
      );
      await engine.resetChat();
    }
    // Two requests at once: queued, each as if it ran alone.
    const both = await Promise.all(
      [a, b].map((m) => engine.chat.completions.create({ messages: m, temperature: 0, max_tokens: 12 })),
    );
    await engine.unload();
    return { inPrefill, prefill, pieces, alone, both: both.map((c: any) => c.choices[0].message.content) };
  }, `${server.url}/models/${MODEL}`);
  expect(r.inPrefill.choices[0].finish_reason).toBe("abort");
  expect(r.inPrefill.usage.completion_tokens).toBe(0);
  expect(r.inPrefill.usage.prompt_tokens).toBeGreaterThan(100);
  // Prompt progress came in steps of the prefill chunk, and stopped short of the end.
  expect(r.prefill.length).toBeGreaterThanOrEqual(3);
  expect(r.prefill.map(([d]: number[]) => d)).toEqual(r.prefill.map((_: unknown, i: number) => 2 * (i + 1)));
  const [done, total] = r.prefill[r.prefill.length - 1];
  expect(done).toBeLessThan(total);
  expect(r.pieces.at(-1)).toBe("<abort>");
  // The tiny model makes a token in about a millisecond, so a few more arrive while the
  // abort message travels; the reply still ends far before max_tokens.
  expect(r.pieces.length).toBeLessThan(40);
  expect(r.both).toEqual(r.alone);
});

test("a connection dropped mid-download resumes where it stopped and the model is correct", async ({ page }) => {
  const reference = await page.evaluate(async (url) => {
    const engine = await (window as any).bitnet.CreateEngine({ model: url, cache: false });
    const c = await engine.chat.completions.create({
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
      max_tokens: 16,
    });
    await engine.unload();
    return c.choices[0].message.content;
  }, `${server.url}/models/${MODEL}`);
  server.log.length = 0;
  server.drops.set(`/flaky/${MODEL}`, { bytes: 100_000, times: 2 });
  const r = await page.evaluate(async (url) => {
    const phases: string[] = [];
    const engine = await (window as any).bitnet.CreateEngine({
      model: url,
      rangeChunkBytes: 300_000,
      onProgress: (p: any) => phases.push(p.phase),
    });
    const c = await engine.chat.completions.create({
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
      max_tokens: 16,
    });
    await engine.unload();
    return { text: c.choices[0].message.content, phases, source: engine.load.source };
  }, `${server.url}/flaky/${MODEL}`);
  expect(r.text).toBe(reference);
  expect(r.phases).toContain("retry");
  // The request after each drop asks for the rest of the range, not the start of the file.
  const ranges = server.log
    .filter((l) => l.path === `/flaky/${MODEL}`)
    .map((l) => Number(/bytes=(\d+)/.exec(l.range ?? "")?.[1]));
  expect(ranges[0]).toBe(0);
  expect(ranges[1]).toBeGreaterThanOrEqual(90_000);
  expect(ranges[1] % 300_000).not.toBe(0);
});

test("a downloaded model loads from the cache offline, is listed, and can be deleted", async ({ page, context }) => {
  const url = `${server.url}/models/${MODEL}`;
  const first = await page.evaluate(async (url) => {
    const engine = await (window as any).bitnet.CreateEngine({ model: url });
    await engine.unload();
    return engine.load;
  }, url);
  expect(first.source).toBe("network");
  server.log.length = 0;
  // Reload with the network off: the page and the engine's scripts come from the HTTP
  // cache (the PWA in www/ has a service worker for that), the model from the offline copy.
  await context.setOffline(true);
  await page.goto("about:blank");
  await page.goto(`${server.url}/`);
  await expect(page).toHaveTitle("ready");
  const r = await page.evaluate(async (url) => {
    const { CreateEngine, listCachedModels, deleteCachedModel } = (window as any).bitnet;
    const engine = await CreateEngine({ model: url });
    const c = await engine.chat.completions.create({
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
      max_tokens: 8,
    });
    await engine.unload();
    const listed = await listCachedModels();
    const deleted = await deleteCachedModel(url);
    const after = await listCachedModels();
    let error: { kind: string; message: string } | null = null;
    try {
      await CreateEngine({ model: url });
    } catch (e: any) {
      error = { kind: e.kind, message: e.message };
    }
    return { source: engine.load.source, text: c.choices[0].message.content, listed, deleted, after, error };
  }, url);
  expect(r.source).toBe("cache");
  expect(r.text.length).toBeGreaterThan(0);
  expect(server.log.length).toBe(0);
  expect(r.listed).toEqual([expect.objectContaining({ url, complete: true, bytes: first.bytes, total: first.bytes })]);
  expect(r.deleted).toBe(true);
  expect(r.after).toEqual([]);
  expect(r.error?.kind).toBe("network");
  expect(r.error?.message).toContain("not in the offline cache");
});

test("a download cut off for good resumes from the partial copy on the next visit", async ({ page }) => {
  const url = `${server.url}/flaky/${MODEL}`;
  server.drops.set(`/flaky/${MODEL}`, { bytes: 250_000, times: 100 });
  const failed = await page.evaluate(async (url) => {
    try {
      await (window as any).bitnet.CreateEngine({ model: url, retries: 1 });
      return null;
    } catch (e: any) {
      return { kind: e.kind, message: e.message, listed: await (window as any).bitnet.listCachedModels() };
    }
  }, url);
  expect(failed?.kind).toBe("network");
  expect(failed?.listed).toEqual([expect.objectContaining({ url, complete: false })]);
  expect(failed?.listed[0].bytes).toBeGreaterThanOrEqual(200_000);
  expect(failed?.listed[0].total).toBeGreaterThan(failed?.listed[0].bytes);
  server.drops.clear();
  server.log.length = 0;
  await page.reload();
  await expect(page).toHaveTitle("ready");
  const r = await page.evaluate(async (url) => {
    const engine = await (window as any).bitnet.CreateEngine({ model: url });
    const listed = await (window as any).bitnet.listCachedModels();
    await engine.unload();
    return { load: engine.load, listed };
  }, url);
  const first = Number(/bytes=(\d+)/.exec(server.log[0].range ?? "")?.[1]);
  expect(first).toBe(failed?.listed[0].bytes);
  expect(r.listed).toEqual([expect.objectContaining({ url, complete: true, bytes: r.load.bytes })]);
});

test("a local File and a split model load through the same path", async ({ page }) => {
  const parts = splitFixture(3);
  const r = await page.evaluate(
    async ({ url, parts, base }) => {
      const { CreateEngine } = (window as any).bitnet;
      const ask = async (engine: any) => {
        const c = await engine.chat.completions.create({
          messages: [{ role: "user", content: "Hi" }],
          temperature: 0,
          max_tokens: 12,
        });
        await engine.unload();
        return c.choices[0].message.content;
      };
      const bytes = await (await fetch(url)).arrayBuffer();
      const file = new File([bytes], "picked.gguf");
      const fromFile = await CreateEngine({ model: file });
      const fromHttp = await CreateEngine({ model: url, cache: false });
      const split = await CreateEngine({ model: parts.map((p: string) => `${base}/models/${p}`) });
      return {
        source: fromFile.load.source,
        file: await ask(fromFile),
        http: await ask(fromHttp),
        split: await ask(split),
        splitLoad: split.load,
      };
    },
    { url: `${server.url}/models/${MODEL}`, parts, base: server.url },
  );
  expect(r.source).toBe("file");
  expect(r.file).toBe(r.http);
  expect(r.split).toBe(r.http);
  expect(r.splitLoad.info.nLayer).toBeGreaterThan(0);
});

test("a picked file that changes on disk before it is read is an io error", async ({ page }) => {
  const dir = join(ROOT, "target/browser-fixtures");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "picked-then-changed.gguf");
  copyFileSync(join(ROOT, "tests/fixtures", MODEL), path);
  await page.evaluate(() => document.body.insertAdjacentHTML("beforeend", '<input type="file" id="pick">'));
  await page.setInputFiles("#pick", path);
  // The page looks at the file as an app would (its size, in a file list) ...
  const picked = await page.evaluate(() => (document.getElementById("pick") as HTMLInputElement).files![0].size);
  expect(picked).toBe(statSync(path).size);
  // ... then the file changes on disk before it is read (a download still being written).
  appendFileSync(path, Buffer.alloc(4096));
  // Browsers notice by the modification time, which a fast copy-then-append can leave in
  // the same clock tick: make it a later one, as a real rewrite would.
  const later = new Date(statSync(path).mtimeMs + 10_000);
  utimesSync(path, later, later);
  const r = await page.evaluate(async () => {
    const { CreateEngine } = (window as any).bitnet;
    const file = (document.getElementById("pick") as HTMLInputElement).files![0];
    return CreateEngine({ model: file }).then(
      () => ({ kind: "loaded", message: "" }),
      (e: any) => ({ kind: e.kind, message: e.message }),
    );
  });
  expect(r.kind).toBe("io");
  expect(r.message).toContain("reading the file failed");
});

test("bad input gets typed errors and the engine stays usable", async ({ page }) => {
  const r = await page.evaluate(
    async ({ base, cross, model }) => {
      const { CreateEngine } = (window as any).bitnet;
      const attempt = async (opts: any) => {
        try {
          const e = await CreateEngine(opts);
          await e.unload();
          return "loaded";
        } catch (e: any) {
          return { name: e.name, kind: e.kind, message: e.message, status: e.status };
        }
      };
      const out: Record<string, any> = {
        notFound: await attempt({ model: `${base}/models/missing.gguf` }),
        html: await attempt({ model: `${base}/html/model.gguf` }),
        corrupt: await attempt({ model: `${base}/corrupt/${model}` }),
        listedAfterCorrupt: await (window as any).bitnet.listCachedModels(),
        cors: await attempt({ model: `${cross}/models/${model}` }),
        badHash: await attempt({ model: `${base}/models/${model}`, sha256: "00".repeat(32) }),
      };
      out.listedAfterBadHash = await (window as any).bitnet.listCachedModels();
      // A request that cannot fit, then a normal one on the same engine.
      const engine = await CreateEngine({ model: `${base}/models/${model}`, nCtx: 32 });
      try {
        await engine.chat.completions.create({ messages: [{ role: "user", content: "word ".repeat(100) }] });
        out.contextFull = "no error";
      } catch (e: any) {
        out.contextFull = { kind: e.kind, message: e.message };
      }
      const ok = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4 });
      out.after = ok.choices[0].finish_reason;
      await engine.unload();
      return out;
    },
    { base: server.url, cross: server.crossUrl, model: MODEL },
  );
  expect(r.notFound).toMatchObject({ name: "BitnetError", kind: "not-found", status: 404 });
  expect(r.html.kind).toBe("wrong-content");
  expect(r.html.message).toContain("text/html");
  expect(r.corrupt.kind).toBe("corrupt-model");
  // Bytes that made no model are not kept (a partial copy would fail the same way forever).
  expect(r.listedAfterCorrupt).toEqual([]);
  expect(r.cors.kind).toBe("cors");
  expect(r.badHash.kind).toBe("checksum-mismatch");
  expect(r.listedAfterBadHash.filter((m: any) => m.complete)).toEqual([]);
  expect(r.contextFull.kind).toBe("context-full");
  expect(["stop", "length"]).toContain(r.after);
});

test("a worker that traps is replaced: that request is a panic error, the next one works without a reload", async ({
  page,
}) => {
  const r = await page.evaluate(async (url) => {
    const engine = await (window as any).bitnet.CreateEngine({ model: url });
    const ask = () =>
      engine.chat.completions
        .create({ messages: [{ role: "user", content: "Hi" }], temperature: 0, max_tokens: 8 })
        .then((c: any) => c.choices[0].message.content);
    const before = await ask();
    let error = null;
    try {
      await engine.panicForTesting();
    } catch (e: any) {
      error = { kind: e.kind, message: e.message };
    }
    const after = await ask();
    const tokens = await engine.tokenize("Hi");
    await engine.unload();
    return { before, after, error, tokens, source: engine.load.source };
  }, `${server.url}/models/${MODEL}`);
  expect(r.error?.kind).toBe("panic");
  expect(r.error?.message).toContain("panicForTesting");
  expect(r.after).toBe(r.before);
  expect(r.tokens.length).toBeGreaterThan(0);
  // The fresh worker read the offline copy: the model was fetched once.
  expect(server.log.filter((l) => l.range === null || /bytes=0-/.test(l.range)).length).toBe(1);
});

test("on a cross-origin-isolated page the engine runs on threads, with the one-thread build's tokens", async ({
  page,
}) => {
  const isolated = await startServer({ isolated: true });
  try {
    await openPage(page, isolated);
    const r = await page.evaluate(
      async ({ url, prompt }) => {
        const { CreateEngine } = (window as any).bitnet;
        const messages = [{ role: "user", content: prompt }];
        const run = async (opts: object) => {
          const engine = await CreateEngine({ model: url, cache: false, ...opts });
          const reply = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
          const stats = await engine.stats();
          const out = {
            backend: engine.load.backend,
            threads: engine.load.threads,
            threadChoice: engine.load.threadChoice,
            cores: navigator.hardwareConcurrency,
            text: reply.choices[0].message.content,
            memoryOk: stats.wasmMemoryBytes > engine.load.bytes,
          };
          await engine.unload();
          return out;
        };
        return {
          isolated: crossOriginIsolated,
          threaded: await run({ threads: 2 }),
          relaxedThreads: await run({ threads: 3, wasmVariant: "relaxed-threads" }),
          simdThreads: await run({ threads: 2, wasmVariant: "simd128-threads" }),
          single: await run({ threads: 1 }),
          // No `threads`: the pool (one thread per core) is timed against one thread.
          auto: await run({}),
        };
      },
      { url: `${isolated.url}/models/${MODEL}`, prompt: PROMPT },
    );
    expect(r.isolated).toBe(true);
    expect(r.threaded).toMatchObject({
      backend: { kind: "wasm", build: "relaxed-threads", threads: 2 },
      threads: 2,
      memoryOk: true,
    });
    expect(r.relaxedThreads).toMatchObject({
      backend: { kind: "wasm", build: "relaxed-threads", threads: 3 },
      threads: 3,
    });
    expect(r.simdThreads).toMatchObject({
      backend: { kind: "wasm", build: "simd128-threads", threads: 2 },
      threads: 2,
      memoryOk: true,
    });
    expect(r.single).toMatchObject({ backend: { kind: "wasm", build: "relaxed", threads: 1 }, threads: 1 });
    expect(r.threaded.threadChoice.reason).toBe("2 threads were asked for");
    expect(r.single.threadChoice.reason).toBe("one thread was asked for");
    // The default keeps whichever of one thread and the pool decoded faster at load.
    const { oneThreadTokensPerS: one, poolTokensPerS: pool, reason } = r.auto.threadChoice;
    expect(one).toBeGreaterThan(0);
    expect(pool).toBeGreaterThan(0);
    const pick = pool > one ? Math.min(r.auto.cores, 8) : 1;
    expect(r.auto).toMatchObject({ backend: { kind: "wasm", build: "relaxed-threads", threads: pick }, threads: pick });
    expect(reason).toContain(pick > 1 ? `${pick} threads are faster` : "one thread is faster");
    // Same greedy reply on every build and thread count.
    for (const x of [r.threaded, r.relaxedThreads, r.simdThreads, r.auto]) expect(x.text).toBe(r.single.text);
    expect(r.single.text.length).toBeGreaterThan(0);
  } finally {
    await isolated.close();
  }
});

test("without cross-origin isolation the engine falls back to one thread", async ({ page }) => {
  const load = await page.evaluate(async (url) => {
    const { CreateEngine } = (window as any).bitnet;
    const engine = await CreateEngine({ model: url, cache: false, threads: 4 });
    const l = engine.load;
    await engine.unload();
    return { backend: l.backend, threads: l.threads, isolated: crossOriginIsolated, why: l.threadChoice.reason };
  }, `${server.url}/models/${MODEL}`);
  expect(load).toEqual({
    backend: { kind: "wasm", build: "relaxed", threads: 1 },
    threads: 1,
    isolated: false,
    why: "the page is not cross-origin isolated: no shared memory for threads",
  });
});

test("leaving a stream early, unloading mid-reply and an aborted signal all stop the work", async ({ page }) => {
  // An already-aborted signal: rejected before any download starts.
  const early = await page.evaluate(async (url) => {
    const { CreateEngine } = (window as any).bitnet;
    return CreateEngine({ model: url, signal: AbortSignal.abort() }).then(
      () => "loaded",
      (e: any) => e.kind,
    );
  }, `${server.url}/models/${MODEL}`);
  expect(early).toBe("aborted");
  expect(server.log).toEqual([]);

  const r = await page.evaluate(async (url) => {
    const { CreateEngine } = (window as any).bitnet;
    const engine = await CreateEngine({ model: url, cache: false });
    const messages = [{ role: "user", content: "Tell me a long story." }];
    const opts = { messages, temperature: 0.8, seed: 12, max_tokens: 400, stream: true };
    let whole = 0;
    for await (const c of await engine.chat.completions.create(opts)) if (c.choices[0].delta.content) whole++;
    const wholeTokens = (await engine.stats()).lastUsage.completion_tokens;
    await engine.resetChat();
    // Breaking out of the loop after three pieces aborts the generation.
    let pieces = 0;
    for await (const c of await engine.chat.completions.create(opts)) {
      if (c.choices[0].delta.content && ++pieces === 3) break;
    }
    const broken = (await engine.stats()).lastUsage.completion_tokens;
    const next = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 4 });
    // unload() while a reply is being written: the reply ends as aborted.
    await engine.resetChat();
    const running = engine.chat.completions.create({ ...opts, stream: false });
    await new Promise((ok) => setTimeout(ok, 50));
    const t1 = performance.now();
    await engine.unload();
    const unloadMs = performance.now() - t1;
    const unloaded = await running.then(
      (c: any) => c.choices[0].finish_reason,
      (e: any) => e.kind,
    );
    return { whole, wholeTokens, broken, next: next.usage.completion_tokens, unloaded, unloadMs };
  }, `${server.url}/models/${MODEL}`);
  console.log(JSON.stringify(r));
  // The unbroken reply is long, so stopping it early is visible.
  expect(r.wholeTokens).toBeGreaterThan(100);
  expect(r.broken).toBeLessThan(r.wholeTokens / 2);
  expect(r.next).toBe(4);
  expect(["abort", "unloaded"]).toContain(r.unloaded);
});
