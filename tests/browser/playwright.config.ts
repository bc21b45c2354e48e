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
    // One retry in WebKitGTK alone, where two failures came and went with nothing
    // changed: the scalar build's self-test trapping after another build failed its own
    // in the same worker (once in 20 runs of that test, once in a CI run), and a test
    // waiting for ever with the browser idle (once in three runs of the file). A retried
    // pass is reported as flaky, so they stay in sight; a real fault fails both tries.
    { name: "webkit", testMatch: EVERY_ENGINE, retries: 1 },
  ],
});
