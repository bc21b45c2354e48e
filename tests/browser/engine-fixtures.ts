/**
 * The fixtures of the tests that run in every browser engine: one browser per Playwright
 * worker, started by tests/browser/engines.mjs for the project's engine (the project's
 * name), and a fresh tab (fresh profile) per test.
 */
import { test as base } from "@playwright/test";
import { type Browser, type EngineName, launch, type Tab } from "./engines.mjs";

export const test = base.extend<{ tab: Tab }, { engineBrowser: Browser }>({
  engineBrowser: [
    // biome-ignore lint/correctness/noEmptyPattern: Playwright reads the fixtures a fixture needs from this pattern.
    async ({}, use, workerInfo) => {
      const browser = await launch(workerInfo.project.name as EngineName);
      await use(browser);
      await browser.close();
    },
    { scope: "worker" },
  ],
  tab: async ({ engineBrowser }, use) => {
    const tab = await engineBrowser.newTab();
    await use(tab);
    await tab.close();
  },
});

/** What each engine runs, as the README's browser-support table says. `offlineCache`:
 * the page gets an origin private file system (WebKitGTK's MiniBrowser gives none). */
export const EXPECTED: Record<
  EngineName,
  { build: "relaxed" | "simd128"; validates: string[]; offlineCache: boolean }
> = {
  chromium: { build: "relaxed", validates: ["relaxed", "simd128", "scalar"], offlineCache: true },
  firefox: { build: "relaxed", validates: ["relaxed", "simd128", "scalar"], offlineCache: true },
  webkit: { build: "simd128", validates: ["simd128", "scalar"], offlineCache: false },
};
