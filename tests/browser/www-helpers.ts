/** Helpers for the chat app's tests (tests/browser/www.spec.ts). */
import { expect, type Page } from "@playwright/test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { ROOT } from "./server.js";
// The same server `npm start` runs.
import { serve } from "../../www/scripts/serve.mjs";

export const APP_DIST = join(ROOT, "www/dist");
export const SHOTS = join(ROOT, "www/docs");
/** A random-weights model, for tests that pick, drop or download a file. */
export const FIXTURE = join(ROOT, "tests/fixtures/tiny-b158-I2_S.gguf");
/** The app's bundled model (the trained tiny model). */
export const BUNDLED = join(ROOT, "tests/fixtures/brown-tiny-I2_S.gguf");

export async function startApp(): Promise<{ url: string; close(): Promise<void> }> {
  if (!existsSync(join(APP_DIST, "index.html")))
    throw new Error("www/dist is missing: run `cd www && npm run build` first");
  const server: Server = await serve({ root: APP_DIST, port: 0 });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
}

function closeServer(s: Server): Promise<void> {
  s.closeAllConnections();
  return new Promise((ok) => s.close(() => ok()));
}

/**
 * Another origin that serves the bundled model slowly (with CORS and byte ranges), so a
 * test can watch a download in progress, as the 1.19 GB model's would look.
 */
export async function startSlowModelServer(bytesPerSecond: number): Promise<{ url: string; close(): Promise<void> }> {
  const model = readFileSync(FIXTURE);
  const server = createServer((req, res) => {
    const cors = {
      "Access-Control-Allow-Origin": "*",
      "Access-Control-Allow-Headers": "Range",
      "Access-Control-Expose-Headers": "Content-Range, Content-Length, ETag, Last-Modified",
    };
    if (req.method === "OPTIONS") return void res.writeHead(204, cors).end();
    const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? "");
    const start = m ? Number(m[1]) : 0;
    const end = m?.[2] ? Math.min(Number(m[2]), model.length - 1) : model.length - 1;
    res.writeHead(m ? 206 : 200, {
      ...cors,
      "Content-Type": "application/octet-stream",
      "Content-Length": end - start + 1,
      ETag: '"slow-fixture"',
      ...(m ? { "Content-Range": `bytes ${start}-${end}/${model.length}` } : {}),
    });
    const step = Math.max(1, Math.round(bytesPerSecond / 20));
    let at = start;
    const timer = setInterval(() => {
      const next = Math.min(at + step, end + 1);
      res.write(model.subarray(at, next));
      at = next;
      if (at > end) {
        clearInterval(timer);
        res.end();
      }
    }, 50);
    res.on("close", () => clearInterval(timer));
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
}

/** Opens the app and waits until its start-up (settings, conversations) is done. */
export async function openApp(page: Page, url: string) {
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") console.log(`[page] ${m.text()}`);
  });
  await page.goto(`${url}/`);
  await expect(page.locator("body")).toHaveAttribute("data-ready", "true");
}

export async function loadBundledModel(page: Page) {
  await page.getByRole("radio", { name: /BitNet tiny/ }).check();
  await page.getByRole("button", { name: "Load model" }).click();
  await expectModelReady(page);
}

export async function expectModelReady(page: Page) {
  await expect(page.locator("#model-chip-text")).toContainText(/WASM · (relaxed SIMD|SIMD128|scalar)/, {
    timeout: 60_000,
  });
  await expect(page.locator("#composer-input")).toBeEnabled();
}

/** Sends `text` with the Enter key and waits for the reply to finish. */
export async function sendAndWait(page: Page, text: string) {
  const before = await page.locator("#messages .msg-assistant").count();
  const input = page.locator("#composer-input");
  await input.fill(text);
  await input.press("Enter");
  await expect(page.locator("#messages .msg-assistant:not(.streaming)")).toHaveCount(before + 1, { timeout: 60_000 });
  await expect(page.locator("#btn-send")).toBeVisible();
  return page.locator("#messages .msg-assistant").last();
}

export async function setSettings(page: Page, values: Record<string, string>) {
  await page.getByRole("button", { name: "Settings" }).click();
  const dialog = page.getByRole("dialog", { name: "Settings" });
  await expect(dialog).toBeVisible();
  for (const [name, value] of Object.entries(values)) await dialog.locator(`[name="${name}"]`).fill(value);
  await dialog.getByRole("button", { name: "Done" }).click();
  await expect(dialog).toBeHidden();
}

/** Saves www/docs/NAME.png; a passing toast is dismissed first unless `keepToast`. */
export async function screenshot(page: Page, name: string, opts: { keepToast?: boolean } = {}) {
  mkdirSync(SHOTS, { recursive: true });
  if (!opts.keepToast && (await page.locator("#toast").isVisible())) await page.locator("#toast-close").click();
  // Let the caret's blink and the progress bar's transition settle into a stable frame.
  await page.waitForTimeout(250);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), animations: "disabled", caret: "hide" });
}
