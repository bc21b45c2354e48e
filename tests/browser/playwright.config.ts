import { defineConfig } from "@playwright/test";

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
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--enable-unsafe-webgpu",
      ],
    },
  },
  projects: [
    { name: "chromium" },
    { name: "firefox", testMatch: EVERY_ENGINE },
    { name: "webkit", testMatch: EVERY_ENGINE },
  ],
});
