#!/usr/bin/env node
/**
 * A cargo runner for wasm32 tests in Firefox or WebKit (`BROWSER_ENGINE=firefox|webkit`),
 * whose drivers wasm-bindgen-test-runner cannot start itself here (it knows geckodriver,
 * which Debian does not ship, and Apple's safaridriver). It starts
 * wasm-bindgen-test-runner in its interactive mode, which serves the test page, opens
 * that page in the engine through tests/browser/engines.mjs, waits for the page's result
 * and exits with it. Usage: CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=<this file>.
 */
import { spawn } from "node:child_process";
import { freePort, launch, waitFor } from "./engines.mjs";

const engine = process.env.BROWSER_ENGINE;
if (engine !== "firefox" && engine !== "webkit" && engine !== "chromium") {
  console.error("wasm-test-runner: set BROWSER_ENGINE to chromium, firefox or webkit");
  process.exit(2);
}
const TIMEOUT_MS = Number(process.env.WASM_BINDGEN_TEST_TIMEOUT ?? 1200) * 1000;

const port = await freePort();
const server = spawn("wasm-bindgen-test-runner", process.argv.slice(2), {
  env: {
    ...process.env,
    WASM_BINDGEN_USE_BROWSER: "1",
    NO_HEADLESS: "1",
    WASM_BINDGEN_TEST_ADDRESS: `127.0.0.1:${port}`,
  },
  stdio: ["ignore", "pipe", "inherit"],
});
const url = await new Promise((ok, fail) => {
  let out = "";
  server.stdout.on("data", (d) => {
    out += d;
    const m = /available at (http:\/\/\S+)/.exec(out);
    if (m) ok(m[1]);
  });
  server.on("exit", (code) => {
    // A test binary without tests ("no tests to run!") ends before serving anything.
    if (code === 0) {
      process.stdout.write(out);
      process.exit(0);
    }
    fail(new Error(`wasm-bindgen-test-runner exited (${code}) before serving:\n${out}`));
  });
});

let passed = false;
const browser = await launch(engine);
try {
  const tab = await browser.newTab();
  await tab.goto(url);
  const output = await waitFor(
    tab,
    () => {
      const text = document.querySelector("#output")?.textContent ?? "";
      return /test result: /.test(text) ? text : null;
    },
    undefined,
    TIMEOUT_MS,
    "the wasm tests' result",
  );
  console.log(`wasm tests in ${engine} (${browser.version}):\n${output}`);
  passed = /test result: ok/.test(output);
  if (!passed) {
    const log = await tab.evaluate(() => document.querySelector("#console_output")?.textContent ?? "");
    console.log(log);
  }
  await tab.close();
} finally {
  await browser.close();
  server.kill();
}
process.exit(passed ? 0 : 1);
