import { defineConfig } from "@playwright/test";
import { CHROMIUM, CHROMIUM_ARGS } from "./engines.mjs";

/** The tests that run in every engine, through tests/browser/engines.mjs. */
const EVERY_ENGINE = ["engines.spec.ts", "www-engines.spec.ts"];

// Debian's browsers (never a downloaded one: there is no network for that here). One
// project per engine: Chromium runs every spec, Firefox and WebKit the cross-engine ones.
export default defineConfig({
  testDir: ".",
  timeout: 180_000,
  workers: 1,
  reporter: [["list"]],
  outputDir: "../../target/playwright",
  use: {
    browserName: "chromium",
    launchOptions: { executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, "--enable-unsafe-webgpu"] },
  },
  projects: [
    { name: "chromium" },
    { name: "firefox", testMatch: EVERY_ENGINE },
    { name: "webkit", testMatch: EVERY_ENGINE },
  ],
});
