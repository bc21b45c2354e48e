/**
 * The chat app (www/, built into www/dist) driven through its real UI in headless Chromium,
 * served by the same server as `npm start`: model picker, download progress, streaming,
 * stop, regenerate, edit, settings, persistence across reloads, offline start through the
 * service worker, sanitized Markdown, PWA basics, errors, phone-sized layout. The tests
 * also take the screenshots in www/docs/.
 */
import { expect, test, type Page } from "@playwright/test";
import { readFileSync, statSync } from "node:fs";
import {
  BUNDLED,
  FIXTURE,
  expectModelReady,
  loadBundledModel,
  openApp,
  screenshot,
  sendAndWait,
  setSettings,
  startApp,
  startSlowModelServer,
} from "./www-helpers.js";

let app: Awaited<ReturnType<typeof startApp>>;
test.beforeAll(async () => {
  app = await startApp();
});
test.afterAll(async () => {
  await app?.close();
});

test.use({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });

async function waitForServiceWorker(page: Page) {
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
}

test("empty state, a download with progress, then a streamed chat on the WASM backend", async ({ page }) => {
  await openApp(page, app.url);
  await expect(page.getByRole("heading", { name: "Choose a model" })).toBeVisible();
  // The official model is the default, with its size shown.
  await expect(page.getByRole("radio", { name: /BitNet b1\.58 2B4T/ })).toBeChecked();
  await expect(page.locator(".model-card", { hasText: "2B4T" })).toContainText("1.19 GB");
  await expect(page.locator(".model-card", { hasText: "BitNet tiny" })).toContainText("not an assistant");
  await expect(page.locator("#composer-input")).toBeDisabled();
  // The service worker's first install says the app now works offline.
  await expect(page.locator("#toast")).toContainText("works offline", { timeout: 30_000 });
  await screenshot(page, "empty", { keepToast: true });
  await page.getByRole("button", { name: "Dismiss" }).click();
  await expect(page.locator("#toast")).toBeHidden();

  // A slow server shows the progress bar's bytes, rate and time left.
  const slow = await startSlowModelServer(120_000);
  try {
    // Cancel stops a download without an error message.
    await page.getByRole("radio", { name: /From a URL/ }).check();
    await page.getByLabel("Model URL").fill(`${slow.url}/tiny-b158-I2_S.gguf`);
    await page.getByRole("button", { name: "Load model" }).click();
    await expect(page.locator("#progress-text")).toContainText(/Downloading \d+ KB of 683 KB/);
    await page.getByRole("button", { name: "Cancel" }).click();
    await expect(page.locator("#load-progress")).toBeHidden();
    await expect(page.getByRole("alert")).toBeHidden();
    await expect(page.getByRole("button", { name: "Load model" })).toBeVisible();

    await page.getByRole("radio", { name: /From a URL/ }).check();
    await page.getByLabel("Model URL").fill(`${slow.url}/tiny-b158-I2_S.gguf`);
    await page.getByRole("button", { name: "Load model" }).click();
    const text = page.locator("#progress-text");
    await expect(text).toContainText(/Downloading \d+ KB of 683 KB · \d+ KB\/s · \d+ s left/, { timeout: 20_000 });
    await expect(page.getByRole("button", { name: "Cancel" })).toBeVisible();
    await page.waitForFunction(
      () => Number(document.querySelector<HTMLProgressElement>("#progress-bar")?.value) > 0.35,
    );
    await screenshot(page, "downloading");
    await expectModelReady(page);
  } finally {
    await slow.close();
  }
  await expect(page.locator("#model-panel")).toBeHidden();
  await expect(page.locator("#model-chip-text")).toContainText("tiny-b158-I2_S.gguf");
  // `npm start`'s server sends cross-origin isolation, so the engine may run on threads: it
  // times one thread against the pool at load and keeps the faster, and the chip says so.
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  if (cores > 1) {
    const pool = Math.min(cores, 8);
    const title = (await page.locator("#btn-model").getAttribute("title")) ?? "";
    const kept = /Threads: (\d+) threads decoded .*: (\d+ threads|one thread) (are|is) faster/.exec(title);
    expect(kept, title).not.toBeNull();
    expect(kept![1]).toBe(String(pool));
    const chip = page.locator("#model-chip-text");
    if (kept![2] === "one thread") await expect(chip).not.toContainText("threads");
    else await expect(chip).toContainText(`· ${pool} threads`);
  }

  // Streamed tokens: the reply grows in place before it is finished. The tiny model writes
  // 200 tokens in four to seven frames here, so the reply is long (600 tokens, about twenty
  // re-renders), with a fixed seed whose reply runs to the end: with a random one, about
  // one reply in six from this nonsense model ends early (loop guard or end of turn).
  await setSettings(page, { max_tokens: "600", seed: "12" });
  const input = page.locator("#composer-input");
  await input.fill("Write a haiku about ternary weights.");
  const sizes: number[] = [];
  const watcher = page.evaluate(
    () =>
      new Promise<number[]>((resolve) => {
        const seen: number[] = [];
        const list = document.querySelector("#messages")!;
        const obs = new MutationObserver(() => {
          const live = list.querySelector(".msg-assistant.streaming .msg-body");
          if (live) seen.push(live.textContent?.length ?? 0);
          else if (seen.length) {
            obs.disconnect();
            resolve(seen);
          }
        });
        obs.observe(list, { childList: true, subtree: true, characterData: true });
      }),
  );
  await input.press("Enter");
  sizes.push(...(await watcher));
  expect(new Set(sizes.filter((n) => n > 0)).size).toBeGreaterThan(3);
  const reply = page.locator("#messages .msg-assistant").last();
  await expect(reply.locator(".msg-meta")).toContainText(/600 tokens · \d+(\.\d+)? tok\/s/);
  await expect(page.locator("#engine-stats")).toContainText(/Memory [1-9][\d.]* MB .* context \d+ of 2048 tokens/);
  await expect(page.locator("#messages .msg-user .msg-body")).toHaveText(["Write a haiku about ternary weights."]);
  await screenshot(page, "chatting");
});

test("stop mid-answer, regenerate, edit-and-resend, settings, and the conversation after a reload", async ({
  page,
}) => {
  await openApp(page, app.url);
  await loadBundledModel(page);
  // Once the model the person picked is ready, typing goes to the message box.
  await expect(page.locator("#composer-input")).toBeFocused();

  // Stop: Esc ends a long reply early, keeping what was written.
  await setSettings(page, { max_tokens: "1800", temperature: "0.8" });
  const input = page.locator("#composer-input");
  await input.fill("Tell me a very long story.");
  await input.press("Enter");
  await expect(page.locator("#btn-stop")).toBeVisible();
  await expect(page.locator(".msg-assistant.streaming .msg-body")).not.toBeEmpty();
  await page.keyboard.press("Escape");
  const stopped = page.locator("#messages .msg-assistant").last();
  await expect(stopped.locator(".msg-meta")).toContainText("stopped");
  const stoppedTokens = Number((await stopped.locator(".msg-meta").textContent())!.match(/(\d+) tokens/)![1]);
  expect(stoppedTokens).toBeGreaterThan(0);
  expect(stoppedTokens).toBeLessThan(1800);
  await expect(page.locator("#btn-send")).toBeVisible();

  // Settings: greedy decoding, a token limit; they are kept across reloads.
  await setSettings(page, { temperature: "0", max_tokens: "12", seed: "7", system: "You are terse." });
  const first = await sendAndWait(page, "Hello there");
  await expect(first.locator(".msg-meta")).toContainText("12 tokens");
  await expect(first.locator(".msg-meta")).toContainText("max tokens reached");
  const firstText = await first.locator(".msg-body").textContent();

  // Regenerate with greedy decoding gives the same reply, in place of the old one.
  await page.getByRole("button", { name: "Regenerate" }).click();
  await expect(page.locator("#btn-send")).toBeVisible();
  await expect(page.locator("#messages .msg-assistant")).toHaveCount(2);
  await expect(page.locator("#messages .msg-assistant").last().locator(".msg-body")).toHaveText(firstText!);

  // Edit-and-resend: the edited turn replaces the old one and everything after it.
  await page.locator("#messages .msg-user").last().getByRole("button", { name: "Edit" }).click();
  const editor = page.getByRole("textbox", { name: "Edit message" });
  await editor.fill("Hello again");
  await editor.press("Enter");
  await expect(page.locator("#messages .msg-user .msg-body")).toHaveText(["Tell me a very long story.", "Hello again"]);
  await expect(page.locator("#messages .msg-assistant:not(.streaming)")).toHaveCount(2);

  // Shift+Enter is a new line, not a send.
  await input.fill("line one");
  await input.press("Shift+Enter");
  await input.pressSequentially("line two");
  await expect(input).toHaveValue("line one\nline two");
  await expect(page.locator("#messages .msg-user")).toHaveCount(2);
  await input.fill("");

  // After a reload: the conversation, the settings, and the model (from its offline copy).
  await page.reload();
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
  await expect(page.locator("#messages .msg-user .msg-body")).toHaveText(["Tell me a very long story.", "Hello again"]);
  await expect(page.locator("#conversation-list .conv-title")).toHaveText(["Tell me a very long story."]);
  await page.getByRole("button", { name: "Settings" }).click();
  await expect(page.locator("#set-temperature")).toHaveValue("0");
  await expect(page.locator("#set-max_tokens")).toHaveValue("12");
  await expect(page.locator("#set-seed")).toHaveValue("7");
  await expect(page.locator("#set-system")).toHaveValue("You are terse.");
  await page.keyboard.press("Escape");
  await expectModelReady(page);

  // New chat (Alt+N) starts empty; the old one stays in the list and opens again.
  await page.keyboard.press("Alt+N");
  await expect(page.locator("#messages .msg")).toHaveCount(0);
  await sendAndWait(page, "Second conversation");
  await expect(page.locator("#conversation-list .conv-title")).toHaveText([
    "Second conversation",
    "Tell me a very long story.",
  ]);
  await page.locator("#conversation-list .conv-open", { hasText: "very long story" }).click();
  await expect(page.locator("#messages .msg-user .msg-body")).toHaveText(["Tell me a very long story.", "Hello again"]);

  // Deleting a conversation (after a confirmation) removes it for good.
  page.once("dialog", (d) => void d.accept());
  await page.getByRole("button", { name: "Delete “Second conversation”" }).click();
  await expect(page.locator("#conversation-list .conv-title")).toHaveText(["Tell me a very long story."]);
  await page.reload();
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
  await expect(page.locator("#conversation-list .conv-title")).toHaveText(["Tell me a very long story."]);
});

test("offline: after the first visit the app and the downloaded model start with no network", async ({
  page,
  context,
}) => {
  await openApp(page, app.url);
  await waitForServiceWorker(page);
  await loadBundledModel(page);
  await setSettings(page, { max_tokens: "40" });
  await sendAndWait(page, "Hi while online");

  await context.setOffline(true);
  await page.reload();
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
  expect(await page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);
  await expect(page.locator("#offline-badge")).toBeVisible();
  // The last model comes back from its offline copy by itself.
  await expectModelReady(page);
  const reply = await sendAndWait(page, "Hi while offline");
  await expect(reply.locator(".msg-meta")).toContainText(/\d+ tokens/);
  await expect(reply.locator(".msg-error")).toHaveCount(0);

  // A fresh tab of the app, offline, also starts.
  const second = await context.newPage();
  await openApp(second, app.url);
  await expect(second.locator("#messages .msg-user .msg-body")).toHaveText(["Hi while online", "Hi while offline"]);
  await expectModelReady(second);
  await second.close();
  await screenshot(page, "offline");
  await context.setOffline(false);
});

/** Puts a conversation with one stored reply where the app keeps them, opens it, and
 * reloads: the reply is rendered by the same code as a streamed one. */
async function storeReply(page: Page, id: string, question: string, reply: string) {
  await page.evaluate(
    async ({ id, question, reply }) => {
      const db = await new Promise<IDBDatabase>((ok, fail) => {
        const req = indexedDB.open("bitnet-chat");
        req.onsuccess = () => ok(req.result);
        req.onerror = () => fail(req.error);
      });
      const tx = db.transaction(["conversations", "prefs"], "readwrite");
      const now = Date.now();
      tx.objectStore("conversations").put({
        id,
        title: question,
        createdAt: now,
        updatedAt: now,
        messages: [
          { id: "u1", role: "user", content: question },
          { id: "a1", role: "assistant", content: reply, finish: "stop" },
        ],
      });
      tx.objectStore("prefs").put(id, "activeConversation");
      await new Promise((ok) => (tx.oncomplete = ok));
      db.close();
    },
    { id, question, reply },
  );
  await page.reload();
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
}

const HOSTILE = [
  "Here you go:",
  '<img src=x onerror="window.__pwned = 1; alert(1)">',
  "<script>window.__pwned = 2</script>",
  '<a href="javascript:window.__pwned=3">html link</a> and [md link](javascript:window.__pwned=4)',
  '<svg onload="window.__pwned=5"></svg><iframe src="javascript:window.__pwned=6"></iframe>',
  "![tracker](https://example.invalid/pixel.png)",
  "```html",
  "<script>window.__pwned = 7</script>",
  "```",
].join("\n");

test("Markdown keeps list numbering, table alignment and task lists, and still no script URLs", async ({ page }) => {
  await openApp(page, app.url);
  const md = [
    "3. three",
    "4. four",
    "",
    "| left | centre | right |",
    "|:-----|:------:|------:|",
    "| a | b | c |",
    "",
    "- [x] done",
    "- [ ] to do",
    "",
    "[js](javascript:window.__pwned=8) [data](data:text/html,hi) [web](https://example.com/a) [here](#top)",
  ].join("\n");
  await storeReply(page, "gfm", "Formatting", md);
  const body = page.locator("#messages .msg-assistant .msg-body");
  await expect(body.locator('ol[start="3"] li')).toHaveText(["three", "four"]);
  await expect(body.locator('th[align="center"]')).toHaveText("centre");
  await expect(body.locator('td[align="right"]')).toHaveText("c");
  const boxes = body.locator("li input");
  await expect(boxes).toHaveCount(2);
  expect(
    await boxes.evaluateAll((bs) =>
      bs.map((b) => [(b as HTMLInputElement).type, (b as HTMLInputElement).checked, (b as HTMLInputElement).disabled]),
    ),
  ).toEqual([
    ["checkbox", true, true],
    ["checkbox", false, true],
  ]);
  const hrefs = await body.locator("a").evaluateAll((as) => as.map((a) => a.getAttribute("href")));
  expect(hrefs.filter((h) => h && /^(javascript|data):/i.test(h))).toEqual([]);
  expect(hrefs).toContain("https://example.com/a");
  expect(hrefs).toContain("#top");
});

test("hostile model output (stored reply, same renderer as streaming) shows as text and runs nothing", async ({
  page,
}) => {
  const dialogs: string[] = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  // From the first moment of every load: each element that enters a message body, and
  // each script the page's policy blocks.
  await page.addInitScript(() => {
    const w = window as unknown as { __added: string[]; __violations: string[] };
    w.__added = [];
    w.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      w.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`),
    );
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) {
          if (!(n instanceof Element)) continue;
          for (const el of [n, ...n.querySelectorAll("*")]) {
            if (!el.closest(".msg-body")) continue;
            const on = [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name);
            w.__added.push([el.localName, ...on].join(" "));
          }
        }
      }
    }).observe(document, { childList: true, subtree: true });
  });
  await openApp(page, app.url);
  await storeReply(page, "hostile", "Show me HTML", HOSTILE);

  const body = page.locator("#messages .msg-assistant .msg-body");
  await expect(body).toContainText('<img src=x onerror="window.__pwned = 1; alert(1)">');
  await expect(body).toContainText("<script>window.__pwned = 2</script>");
  await expect(body.locator("pre code")).toContainText("<script>window.__pwned = 7</script>");
  // Nothing that can run was ever inserted, not even for a moment.
  const seen = await page.evaluate(() => {
    const w = window as unknown as { __added: string[]; __violations: string[] };
    return { __added: w.__added, __violations: w.__violations };
  });
  expect(seen.__added.length).toBeGreaterThan(0);
  expect(seen.__added.filter((t) => /^(img|script|svg|iframe|object|embed)\b| on/.test(t))).toEqual([]);
  for (const href of await body.locator("a").evaluateAll((as) => as.map((a) => a.getAttribute("href")))) {
    expect(href ?? "").not.toMatch(/^(javascript|data|vbscript):/i);
  }
  expect(seen.__violations).toEqual([]);
  expect(await page.evaluate(() => (window as { __pwned?: number }).__pwned)).toBeUndefined();
  expect(dialogs).toEqual([]);

  // The page's Content-Security-Policy is the last line: no inline script, no inline
  // handler. Each is reported as blocked; the wait is for those reports, not a timer.
  const csp = await page.evaluate(async () => {
    // The policy comes twice (header and <meta>), so each block may be reported twice.
    const blocked = new Promise<string[]>((ok) => {
      const got = new Set<string>();
      document.addEventListener("securitypolicyviolation", (e) => {
        got.add(e.effectiveDirective);
        if (got.size === 2) ok([...got].sort());
      });
    });
    const s = document.createElement("script");
    s.textContent = "window.__inline = 1";
    document.body.append(s);
    const img = document.createElement("img");
    img.setAttribute("onerror", "window.__handler = 1");
    img.src = "data:,not-an-image";
    document.body.append(img);
    const directives = await blocked;
    return {
      directives,
      inline: (window as { __inline?: number }).__inline,
      handler: (window as { __handler?: number }).__handler,
    };
  });
  expect(csp).toEqual({ directives: ["script-src-attr", "script-src-elem"], inline: undefined, handler: undefined });
  const response = await page.request.get(`${app.url}/`);
  expect(response.headers()["content-security-policy"]).toContain("script-src 'self' 'wasm-unsafe-eval'");
  expect(response.headers()["content-security-policy"]).not.toContain("unsafe-inline");
  expect(response.headers()["content-security-policy"]).not.toContain("'unsafe-eval'");
  expect(await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute("content")).not.toContain(
    "'unsafe-eval'",
  );
});

test("Markdown replies: code blocks with copy buttons (a stored reply, for the screenshot)", async ({ page }) => {
  await openApp(page, app.url);
  await page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((ok) => {
      const req = indexedDB.open("bitnet-chat");
      req.onsuccess = () => ok(req.result);
    });
    const tx = db.transaction(["conversations", "prefs"], "readwrite");
    const now = Date.now();
    const reply = [
      "Ternary weights take one of **three values**: `-1`, `0` and `+1`.",
      "",
      "| weight | effect |",
      "|---|---|",
      "| +1 | add the input |",
      "| 0 | skip it |",
      "| -1 | subtract it |",
      "",
      "So a matrix–vector product needs no multiplications:",
      "",
      "```rust",
      "fn dot(w: &[i8], x: &[i8]) -> i32 {",
      "    w.iter().zip(x).map(|(&w, &x)| match w {",
      "        1 => x as i32,",
      "        -1 => -(x as i32),",
      "        _ => 0,",
      "    }).sum()",
      "}",
      "```",
    ].join("\n");
    tx.objectStore("conversations").put({
      id: "markdown",
      title: "Why ternary weights are fast",
      createdAt: now,
      updatedAt: now,
      messages: [
        { id: "u1", role: "user", content: "Why are ternary weights fast?" },
        { id: "a1", role: "assistant", content: reply, finish: "stop" },
      ],
    });
    tx.objectStore("prefs").put("markdown", "activeConversation");
    await new Promise((ok) => (tx.oncomplete = ok));
    db.close();
  });
  await page.reload();
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
  const body = page.locator("#messages .msg-assistant .msg-body");
  await expect(body.locator("strong")).toHaveText("three values");
  await expect(body.locator("table tr")).toHaveCount(4);
  await expect(body.locator(".code-head")).toContainText("rust");
  await expect(body.getByRole("button", { name: "Copy rust code" })).toBeVisible();
  await page.locator("#btn-model").click();
  await screenshot(page, "markdown");
});

test("PWA basics: a valid manifest with icons, a service worker in control, an offline start", async ({
  page,
  context,
}) => {
  await openApp(page, app.url);
  const href = await page.locator('link[rel="manifest"]').getAttribute("href");
  expect(href).toBeTruthy();
  const manifestUrl = new URL(href!, `${app.url}/`).href;
  const res = await page.request.get(manifestUrl);
  expect(res.ok()).toBe(true);
  const manifest = await res.json();
  expect(manifest.name).toBeTruthy();
  expect(manifest.short_name.length).toBeLessThanOrEqual(12);
  expect(["standalone", "fullscreen", "minimal-ui"]).toContain(manifest.display);
  expect(manifest.start_url).toBeTruthy();
  expect(manifest.theme_color).toMatch(/^#/);
  expect(manifest.background_color).toMatch(/^#/);
  const pngs = manifest.icons.filter((i: { type: string }) => i.type === "image/png");
  for (const size of ["192x192", "512x512"]) expect(pngs.some((i: { sizes: string }) => i.sizes === size)).toBe(true);
  expect(manifest.icons.some((i: { purpose?: string }) => i.purpose?.includes("maskable"))).toBe(true);
  for (const icon of pngs) {
    const img = await page.request.get(new URL(icon.src, manifestUrl).href);
    expect(img.headers()["content-type"]).toBe("image/png");
    const png = await img.body();
    // PNG signature, then the IHDR chunk's width and height.
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect(`${png.readUInt32BE(16)}x${png.readUInt32BE(20)}`).toBe(icon.sizes);
  }
  await expect(page.locator('meta[name="theme-color"]')).toHaveCount(1);
  await expect(page.locator('meta[name="viewport"]')).toHaveCount(1);
  await expect(page.locator('link[rel="apple-touch-icon"]')).toHaveCount(1);

  await waitForServiceWorker(page);
  const sw = await page.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration();
    const keys = await caches.keys();
    const cached: string[] = [];
    for (const k of keys) for (const r of await (await caches.open(k)).keys()) cached.push(new URL(r.url).pathname);
    return { scope: reg?.scope, cached };
  });
  expect(new URL(manifest.start_url, manifestUrl).href.startsWith(sw.scope!)).toBe(true);
  // The app shell, the engine's worker and wasm, and the bundled model are precached.
  expect(sw.cached).toContain("/index.html");
  expect(sw.cached.some((p) => p.endsWith(".wasm"))).toBe(true);
  expect(sw.cached.some((p) => /worker.*\.js$/.test(p))).toBe(true);
  expect(sw.cached).toContain("/models/brown-tiny-I2_S.gguf");

  // Chromium's own verdicts: the manifest parses cleanly and the app is installable.
  const cdp = await context.newCDPSession(page);
  const parsed = await cdp.send("Page.getAppManifest");
  expect(parsed.errors).toEqual([]);
  const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
  // Playwright's contexts are incognito ones, where nothing installs: that one is the browser's.
  expect(installabilityErrors.filter((e) => e.errorId !== "in-incognito")).toEqual([]);

  await context.setOffline(true);
  await page.goto(new URL(manifest.start_url, manifestUrl).href);
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
  await expect(page).toHaveTitle("BitNet Chat");
  // Offline, the bundled model still loads (from the service worker's copy).
  await loadBundledModel(page);
  await context.setOffline(false);
});

test("local files: the file picker and drag-and-drop; cached models are listed and deletable", async ({ page }) => {
  page.on("dialog", (d) => void d.accept());
  await openApp(page, app.url);
  await page.getByRole("radio", { name: /From this device/ }).check();
  await page.locator("#local-file").setInputFiles(FIXTURE);
  await page.getByRole("button", { name: "Load model" }).click();
  await expectModelReady(page);
  await expect(page.locator("#model-chip-text")).toContainText("tiny-b158-I2_S.gguf");
  expect(await page.locator("#cached-list li").count()).toBe(0);

  // Drop a file on the picker.
  await page.locator("#btn-model").click();
  const bytes = [...readFileSync(FIXTURE)];
  const transfer = await page.evaluateHandle((b) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(b)], "dropped-model.gguf"));
    return dt;
  }, bytes);
  await page.locator("#model-panel").dispatchEvent("drop", { dataTransfer: transfer });
  await expect(page.getByRole("radio", { name: /From this device/ })).toBeChecked();
  await expect(page.locator("#drop-zone")).toContainText("dropped-model.gguf (683 KB)");
  await page.getByRole("button", { name: "Load model" }).click();
  await expect(page.locator("#model-chip-text")).toContainText("dropped-model.gguf");

  // A model from a URL is kept offline, listed with its size, and can be deleted.
  await page.locator("#btn-model").click();
  await loadBundledModel(page);
  await page.locator("#btn-model").click();
  const item = page.locator("#cached-list li");
  await expect(item).toHaveCount(1);
  await expect(item).toContainText("BitNet tiny (Brown corpus)");
  await expect(item).toContainText(`${(statSync(BUNDLED).size / 1e6).toFixed(2)} MB`);
  await item.getByRole("button", { name: /Delete/ }).click();
  await expect(page.locator("#cached-list li")).toHaveCount(0);
});

test("errors are explained per kind with what to do", async ({ page }) => {
  await openApp(page, app.url);
  const alert = page.getByRole("alert");

  await page.getByRole("radio", { name: /From a URL/ }).check();
  await page.getByRole("button", { name: "Load model" }).click();
  await expect(alert).toContainText("Which model?");

  await page.getByLabel("Model URL").fill(`${app.url}/models/no-such-model.gguf`);
  await page.getByRole("button", { name: "Load model" }).click();
  await expect(alert).toHaveAttribute("data-kind", "not-found");
  await expect(alert).toContainText("The model was not found at that address");
  await expect(alert).toContainText("/resolve/");

  await page.getByLabel("Model URL").fill(`${app.url}/index.html`);
  await page.getByRole("button", { name: "Load model" }).click();
  await expect(alert).toHaveAttribute("data-kind", "wrong-content");
  await expect(alert).toContainText("did not return a model file");
  await screenshot(page, "error");
});

test("the WebGPU backend (Chromium's SwiftShader) and the WASM backend give the same greedy reply", async ({
  page,
}) => {
  test.setTimeout(300_000);
  // Without a repetition penalty, the bundled model's greedy path for this prompt never
  // comes within 0.04 of a tie (tests/fixtures/brown-tiny.ref.json): a GPU's other
  // rounding cannot flip a token.
  const PROMPT = "The president of the";
  await openApp(page, app.url);
  await setSettings(page, { temperature: "0", repetition_penalty: "1", max_tokens: "10", system: "" });
  await page.getByRole("radio", { name: /BitNet tiny/ }).check();
  await page.locator("summary", { hasText: "Advanced" }).click();
  await page.getByLabel("Backend").selectOption("webgpu");
  await page.getByRole("button", { name: "Load model" }).click();
  await expect(page.locator("#model-chip-text")).toContainText("WebGPU", { timeout: 120_000 });
  await expect(page.locator("#composer-input")).toBeEnabled();
  const onGpu = await (await sendAndWait(page, PROMPT)).locator(".msg-body").textContent();

  await page.getByRole("button", { name: "+ New chat" }).click();
  await page.locator("#btn-model").click();
  const advanced = page.locator("details", { has: page.locator("summary", { hasText: "Advanced" }) });
  if ((await advanced.getAttribute("open")) === null) await advanced.locator("summary").click();
  await page.getByLabel("Backend").selectOption("wasm");
  await page.getByRole("button", { name: "Load model" }).click();
  await expectModelReady(page);
  const onCpu = await (await sendAndWait(page, PROMPT)).locator(".msg-body").textContent();
  expect(onGpu?.length).toBeGreaterThan(0);
  expect(onGpu).toBe(onCpu);
});

test("Advanced: the exact int4 LM head loads, says so, and answers as the file's head does", async ({ page }) => {
  await openApp(page, app.url);
  await setSettings(page, { temperature: "0", max_tokens: "12", system: "" });
  const answer = async (head: string) => {
    if (await page.locator("#model-panel").isHidden()) await page.locator("#btn-model").click();
    await page.getByRole("radio", { name: /BitNet tiny/ }).check();
    const advanced = page.locator("details", { has: page.locator("summary", { hasText: "Advanced" }) });
    if (!(await advanced.evaluate((d) => (d as HTMLDetailsElement).open)))
      await page.locator("summary", { hasText: "Advanced" }).click();
    await page.getByLabel("LM head").selectOption(head);
    await page.getByRole("button", { name: "Load model" }).click();
    await expectModelReady(page);
    const label = await page.locator("#model-chip-text").textContent();
    const reply = await (await sendAndWait(page, "Hello there")).locator(".msg-body").textContent();
    await page.keyboard.press("Alt+N");
    return { label, reply };
  };
  const exact = await answer("int4-exact");
  const file = await answer("file");
  expect(exact.label).toContain("· exact int4 head");
  expect(file.label).not.toContain("int8");
  expect(exact.reply?.length).toBeGreaterThan(0);
  expect(exact.reply).toBe(file.reply);
});

test("Advanced: the int8 LM head loads, says so, and answers", async ({ page }) => {
  await openApp(page, app.url);
  await setSettings(page, { temperature: "0", max_tokens: "8", system: "" });
  await page.getByRole("radio", { name: /BitNet tiny/ }).check();
  await page.locator("summary", { hasText: "Advanced" }).click();
  await page.getByLabel("LM head").selectOption("int8");
  await page.getByRole("button", { name: "Load model" }).click();
  await expectModelReady(page);
  await expect(page.locator("#model-chip-text")).toContainText("· int8 head");
  const reply = await (await sendAndWait(page, "Hello there")).locator(".msg-body").textContent();
  expect(reply?.length).toBeGreaterThan(0);
});

test.describe("phone", () => {
  test.use({ viewport: { width: 390, height: 844 }, colorScheme: "dark", hasTouch: true, isMobile: true });

  test("a phone-sized screen in the dark theme: no sideways scroll, a drawer for conversations", async ({ page }) => {
    await openApp(page, app.url);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await loadBundledModel(page);
    await setSettings(page, { max_tokens: "40" });
    await sendAndWait(page, "Hi from a phone");
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await expect(page.locator("#sidebar")).toBeHidden();
    await page.getByRole("button", { name: "Conversations" }).click();
    await expect(page.locator("#sidebar")).toBeVisible();
    await expect(page.locator("#conversation-list")).toContainText("Hi from a phone");
    await page.keyboard.press("Escape");
    await expect(page.locator("#sidebar")).toBeHidden();
    await screenshot(page, "phone-dark");
  });
});

test("keyboard: focus order reaches the controls, Esc closes the settings dialog, labels everywhere", async ({
  page,
}) => {
  await openApp(page, app.url);
  // Every form control has an accessible name.
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea, button")]
      .filter((el) => (el as HTMLElement).offsetParent !== null)
      .filter((el) => {
        const e = el as HTMLInputElement;
        return !(
          e.labels?.length ||
          e.getAttribute("aria-label") ||
          e.getAttribute("aria-labelledby") ||
          e.textContent?.trim()
        );
      })
      .map((el) => el.outerHTML.slice(0, 80)),
  );
  expect(unnamed).toEqual([]);
  await expect(page.locator("#messages")).toHaveAttribute("aria-live", "polite");
  await page.keyboard.press("Tab");
  await expect(page.locator(".skip-link")).toBeFocused();
  const order: string[] = [];
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press("Tab");
    order.push(
      await page.evaluate(() => document.activeElement?.id || document.activeElement?.getAttribute("aria-label") || ""),
    );
  }
  expect(order).toEqual(expect.arrayContaining(["btn-model", "btn-settings", "btn-theme", "btn-new-chat"]));
  await page.getByRole("button", { name: "Settings" }).click();
  await expect(page.getByRole("dialog")).toBeVisible();
  await page.keyboard.press("Escape");
  await expect(page.getByRole("dialog")).toBeHidden();
  // The theme button cycles system → light → dark.
  await page.locator("#btn-theme").click();
  await page.locator("#btn-theme").click();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
});
