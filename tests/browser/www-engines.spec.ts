/**
 * The chat app in every browser engine (one Playwright project per engine): pick the
 * bundled model, chat, reload and find the conversation, then reload with the app's
 * server gone and start from the service worker and the offline copy of the model (where
 * the engine gives the page an origin private file system; elsewhere the app says at load
 * that the model is not kept offline). The Chromium-only www.spec.ts covers the rest.
 */
import { expect } from "@playwright/test";
import { EXPECTED, test } from "./engine-fixtures.js";
import { type Tab, waitFor } from "./engines.mjs";
import { startApp } from "./www-helpers.js";

const ready = (tab: Tab) =>
  waitFor(tab, () => document.body.dataset.ready === "true", undefined, 30_000, "the app's start-up");

const modelReady = (tab: Tab) =>
  waitFor(
    tab,
    () => {
      const chip = document.querySelector("#model-chip-text")?.textContent ?? "";
      const input = document.querySelector<HTMLTextAreaElement>("#composer-input");
      return /WASM · (relaxed SIMD|SIMD128|scalar)/.test(chip) && input && !input.disabled ? chip : null;
    },
    undefined,
    90_000,
    "the model chip",
  );

/** Sends `text` and waits for the reply to finish; the replies' texts, the new one last. */
async function send(tab: Tab, text: string): Promise<string[]> {
  const before = await tab.evaluate(() => document.querySelectorAll("#messages .msg-assistant").length);
  await tab.fill("#composer-input", text);
  await tab.click("#btn-send");
  return waitFor(
    tab,
    (n) => {
      const done = [...document.querySelectorAll("#messages .msg-assistant:not(.streaming)")];
      const sendShown = !document.querySelector<HTMLButtonElement>("#btn-send")!.hidden;
      return done.length === n + 1 && sendShown
        ? done.map((m) => m.querySelector(".msg-body")?.textContent ?? "")
        : null;
    },
    before,
    90_000,
    "the reply",
  );
}

const userMessages = (tab: Tab) =>
  tab.evaluate(() => [...document.querySelectorAll("#messages .msg-user .msg-body")].map((m) => m.textContent));

test("pick the bundled model, chat, find the conversation after a reload, then start offline", async ({ tab }) => {
  const app = await startApp();
  let closed = false;
  try {
    await tab.goto(`${app.url}/`);
    await ready(tab);
    const sw = await tab.evaluate(async () => {
      await navigator.serviceWorker.ready;
      return navigator.serviceWorker.controller !== null || (await navigator.serviceWorker.getRegistration()) !== null;
    });
    expect(sw).toBe(true);
    await tab.click('input[name="model"][value="bundled"]');
    await tab.click("#btn-load");
    const chip = await modelReady(tab);
    // The app's page is cross-origin isolated and every engine here gives it a shared
    // memory: the threads build runs, and its pool was timed against one thread.
    expect(chip).toContain(EXPECTED[tab.engine].build === "relaxed" ? "relaxed SIMD" : "SIMD128");
    const why = await tab.evaluate(() => document.querySelector<HTMLElement>("#btn-model")!.title);
    expect(why).toMatch(/Threads: \d+ threads decoded [\d.]+ tokens\/s, one thread [\d.]+/);
    const cache = EXPECTED[tab.engine].offlineCache;
    const alert = await tab.evaluate(() => {
      const a = document.querySelector<HTMLElement>("#load-error")!;
      return a.hidden ? null : a.textContent!.replace(/\s+/g, " ").trim();
    });
    if (cache) expect(alert).toBeNull();
    else expect(alert).toContain("not kept offline");
    const replies = await send(tab, "The sea is");
    expect(replies).toHaveLength(1);
    expect(replies[0].length).toBeGreaterThan(0);

    // A reload finds the conversation and brings the model back.
    await tab.reload();
    await ready(tab);
    expect(await userMessages(tab)).toEqual(["The sea is"]);
    if (cache) await modelReady(tab);

    // The app's server goes away: the service worker serves the app, the model comes from
    // its offline copy, and the chat goes on.
    await app.close();
    closed = true;
    await tab.reload();
    await ready(tab);
    expect(await tab.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);
    expect(await userMessages(tab)).toEqual(["The sea is"]);
    if (!cache) return;
    await modelReady(tab);
    const offline = await send(tab, "The ship");
    expect(offline).toHaveLength(2);
    expect(offline[1].length).toBeGreaterThan(0);
    expect(await tab.evaluate(() => document.querySelectorAll("#messages .msg-error").length)).toBe(0);
  } finally {
    if (!closed) await app.close();
  }
});
