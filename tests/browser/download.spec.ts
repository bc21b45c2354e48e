/**
 * Downloads against servers that change the file, hide its size, hide their headers
 * from other origins, or are shared by two tabs: the offline copy never joins two
 * versions of a file, never keeps bytes that did not make a model, and a changed file
 * is fetched again from the start by itself.
 */
import { expect, test, type Page } from "@playwright/test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MODEL, openPage } from "./helpers.js";
import { ROOT, startServer, type TestServer } from "./server.js";

/** Another model of almost the same size: a different file at the same URL. */
const OTHER = "tiny-silu-fold-bitnet-I2_S.gguf";
const fixture = (name: string) => readFileSync(join(ROOT, "tests/fixtures", name));

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

interface Loaded {
  text?: string;
  source?: string;
  cacheError?: unknown;
  error?: { kind: string; message: string };
  listed: { url: string; complete: boolean; bytes: number; total: number | null }[];
}

/** Loads `url` in the page, answers "Hi" greedily, and lists the offline copies. */
function load(page: Page, url: string, opts: Record<string, unknown> = {}): Promise<Loaded> {
  return page.evaluate(
    async ({ url, opts }) => {
      const { CreateEngine, listCachedModels } = (window as any).bitnet;
      try {
        const engine = await CreateEngine({ model: url, ...opts });
        const c = await engine.chat.completions.create({
          messages: [{ role: "user", content: "Hi" }],
          temperature: 0,
          max_tokens: 12,
        });
        await engine.unload();
        return {
          text: c.choices[0].message.content,
          source: engine.load.source,
          cacheError: engine.load.cacheError,
          listed: await listCachedModels(),
        };
      } catch (e: any) {
        return { error: { kind: e.kind, message: e.message }, listed: await listCachedModels() };
      }
    },
    { url, opts },
  );
}

/** The greedy answer of a fixture, loaded without the offline cache. */
async function reference(page: Page, name: string): Promise<string> {
  const r = await load(page, `${server.url}/models/${name}`, { cache: false });
  expect(r.error).toBeUndefined();
  return r.text!;
}

/** Leaves a partial copy of `path`: the download is cut off for good at about 250 kB. */
async function leavePartialCopy(page: Page, path: string) {
  server.drops.set(path, { bytes: 250_000, times: 100 });
  const failed = await load(page, `${server.url}${path}`, { retries: 1 });
  expect(failed.error?.kind).toBe("network");
  expect(failed.listed).toEqual([expect.objectContaining({ complete: false })]);
  server.drops.clear();
  server.log.length = 0;
}

const starts = (path: string) =>
  server.log.filter((l) => l.path === path).map((l) => Number(/bytes=(\d+)/.exec(l.range ?? "")?.[1] ?? 0));

test("a file replaced on the server under a partial copy is fetched again from the start, once", async ({ page }) => {
  const path = `/flaky/${MODEL}`;
  const expected = await reference(page, OTHER);
  await leavePartialCopy(page, path);
  const other = fixture(OTHER);
  server.quirks.set(path, { body: other, etag: '"other"' });
  const r = await load(page, `${server.url}${path}`);
  expect(r.error).toBeUndefined();
  expect(r.text).toBe(expected);
  // The resumed request found another version; the next one starts over at byte 0.
  expect(starts(path)[0]).toBeGreaterThan(0);
  expect(starts(path)).toContain(0);
  expect(r.listed).toEqual([expect.objectContaining({ complete: true, bytes: other.length, total: other.length })]);
});

test("a weak ETag that changes is a new version too: the pieces of two versions are never joined", async ({ page }) => {
  const path = `/flaky/${MODEL}`;
  server.quirks.set(path, { etag: 'W/"one"', lastModified: null });
  const expected = await reference(page, MODEL);
  await leavePartialCopy(page, path);
  // The same size: only the validator tells the versions apart.
  server.quirks.set(path, { etag: 'W/"two"', lastModified: null });
  const r = await load(page, `${server.url}${path}`);
  expect(r.text).toBe(expected);
  expect(starts(path)[0]).toBeGreaterThan(0);
  expect(starts(path).slice(1)).toContain(0);
  expect(r.listed).toEqual([expect.objectContaining({ complete: true })]);
});

test("a body that ends early is never kept as complete, whether the size is hidden or missing", async ({ page }) => {
  const whole = fixture(MODEL);
  const cut = whole.subarray(0, 400_000);
  // `Content-Range: bytes a-b/*` over ranged pieces, then a 200 with no Content-Length.
  for (const [path, quirks] of [
    [`/models/${MODEL}`, { body: cut, unknownTotal: true }],
    [`/norange/${MODEL}`, { body: cut, noLength: true }],
  ] as const) {
    server.quirks.set(path, quirks);
    const failed = await load(page, `${server.url}${path}`, { rangeChunkBytes: 100_000 });
    expect(failed.error?.kind).toBe("corrupt-model");
    expect(failed.listed).toEqual([]);
    // The whole file, its size still untold: loads, and is kept.
    server.quirks.set(path, { ...quirks, body: whole });
    const ok = await load(page, `${server.url}${path}`, { rangeChunkBytes: 100_000 });
    expect(ok.error).toBeUndefined();
    expect(ok.listed).toEqual([expect.objectContaining({ complete: true, bytes: whole.length })]);
    const again = await load(page, `${server.url}${path}`);
    expect(again.source).toBe("cache");
    expect(again.text).toBe(ok.text);
    await page.evaluate((url) => (window as any).bitnet.deleteCachedModel(url), `${server.url}${path}`);
  }
});

test("a cross-origin host that exposes no headers and refuses preflights still serves a resumable download", async ({
  page,
}) => {
  const path = `/flaky/${MODEL}`;
  const expected = await reference(page, MODEL);
  server.log.length = 0;
  server.drops.set(path, { bytes: 250_000, times: 1 });
  const r = await load(page, `${server.bareCorsUrl}${path}`, { rangeChunkBytes: 300_000 });
  expect(r.error).toBeUndefined();
  expect(r.text).toBe(expected);
  // No request needed a preflight (the host answers those with 403).
  expect(server.log.filter((l) => l.status === 403)).toEqual([]);
  expect(r.listed).toEqual([expect.objectContaining({ complete: true, bytes: fixture(MODEL).length })]);
});

test("two tabs loading one model share one download instead of writing over each other", async ({ page, context }) => {
  const path = `/models/${MODEL}`;
  const url = `${server.url}${path}`;
  const second = await context.newPage();
  await openPage(second, server);
  server.quirks.set(path, { delayMs: 150 });
  const [a, b] = await Promise.all([
    load(page, url, { rangeChunkBytes: 100_000 }),
    second
      .evaluate(() => new Promise((ok) => setTimeout(ok, 200)))
      .then(() => load(second, url, { rangeChunkBytes: 100_000 })),
  ]);
  expect(a.error).toBeUndefined();
  expect(b.error).toBeUndefined();
  expect([a.source, b.source].sort()).toEqual(["cache", "network"]);
  expect(a.cacheError).toBeUndefined();
  expect(b.cacheError).toBeUndefined();
  expect(b.text).toBe(a.text);
  // One download's pieces, not two.
  expect(starts(path).filter((s) => s === 0)).toHaveLength(1);
  await second.close();
});
