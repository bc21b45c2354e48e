import { expect, type Page } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT, type TestServer } from "./server.js";

export const MODEL = "tiny-b158-I2_S.gguf";

/** The `bitnet` CLI from this checkout (built on first use), in the optimized `test`
 * profile: `cargo test` has compiled its dependencies already, and synthesizing the
 * full-size stand-in takes seconds instead of minutes. */
export function cli(...args: string[]): string {
  return execFileSync("cargo", ["run", "--locked", "-q", "--profile", "test", "-p", "bitnet-cli", "--", ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });
}

/** The fixture split into `n` gguf-split parts, under target/browser-fixtures. */
export function splitFixture(n: number): string[] {
  const dir = join(ROOT, "target/browser-fixtures");
  mkdirSync(dir, { recursive: true });
  return cli(
    "split",
    "--model",
    join(ROOT, "tests/fixtures", MODEL),
    "--parts",
    String(n),
    "--out",
    join(dir, "tiny-split"),
  )
    .trim()
    .split("\n")
    .map((p) => p.split("/").pop()!);
}

export async function openPage(page: Page, server: TestServer) {
  page.on("console", (m) => {
    if (m.type() === "error") console.log(`[page] ${m.text()}`);
  });
  await page.goto(`${server.url}/`);
  await expect(page).toHaveTitle("ready");
}
