import { defineConfig } from "@playwright/test";
import base from "../playwright.config.js";

// `npm run bench:browser`: the benchmarks only (never part of the test run).
export default defineConfig({
  ...base,
  testDir: ".",
  testMatch: "*.bench.ts",
  timeout: 1_800_000,
  outputDir: "../../../target/playwright-bench",
  // The bench starts each engine itself (tests/browser/engines.mjs).
  projects: [{ name: "engines" }],
});
