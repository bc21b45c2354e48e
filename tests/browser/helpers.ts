import { expect, type Page } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT, type TestServer } from "./server.js";

export const MODEL = "tiny-b158-I2_S.gguf";

let cliBuilt = false;
/** The `bitnet` CLI from this checkout, as `cargo test --workspace` builds it (the test
 * profile, optimized): run through `cargo test --no-run` first, which builds nothing when
 * the test command's native stage already did, and rebuilds a binary older than the code.
 * (`cargo run -p bitnet-cli` would compile the engine again: one package alone resolves
 * other features than the workspace.) */
export function cli(...args: string[]): string {
  if (!cliBuilt) {
    execFileSync("cargo", ["test", "--workspace", "--locked", "--no-run", "-q"], { cwd: ROOT, stdio: "ignore" });
    cliBuilt = true;
  }
  return execFileSync(join(ROOT, "target/debug/bitnet"), args, { cwd: ROOT, encoding: "utf8" });
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
