/**
 * `npm pack` gives a tarball that a fresh Vite app installs, builds and runs: the
 * package's files, exports and worker/wasm URLs survive a bundler.
 */
import { expect, test } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cli, MODEL, openPage } from "./helpers.js";
import { ROOT, startServer, type TestServer } from "./server.js";

let server: TestServer;
test.beforeAll(async () => {
  server = await startServer();
});
test.afterAll(async () => {
  await server.close();
});

const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });

test("the packed tarball installs into a fresh Vite app, builds, and chats", async ({ page }) => {
  test.setTimeout(600_000);
  const pack = join(ROOT, "target/pack");
  rmSync(pack, { recursive: true, force: true });
  mkdirSync(pack, { recursive: true });
  const tarball = join(pack, JSON.parse(run("npm", ["pack", "--json", "--pack-destination", pack], ROOT))[0].filename);
  const listing = run("tar", ["-tzf", tarball], ROOT);
  for (const f of ["index.js", "index.d.ts", "worker.js", "wasm-builds.json"])
    expect(listing).toContain(`package/dist/js/${f}`);
  for (const v of ["scalar", "simd128", "relaxed"])
    expect(listing).toContain(`package/dist/wasm/${v}/bitnet_web_bg.wasm`);

  const app = join(ROOT, "target/vite-app");
  rmSync(app, { recursive: true, force: true });
  cpSync(join(ROOT, "tests/browser/vite-app"), app, { recursive: true });
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({
      name: "fresh-app",
      private: true,
      type: "module",
      dependencies: { "bitnet-web": `file:${tarball}` },
      devDependencies: { vite: "^8.3.8" },
    }),
  );
  run("npm", ["install", "--no-audit", "--no-fund"], app);
  run("npx", ["vite", "build"], app);
  expect(readdirSync(join(app, "dist/assets")).some((f) => f.endsWith(".wasm"))).toBe(true);

  const prompt = "Hello";
  const expected = JSON.parse(
    cli("generate", "--model", `tests/fixtures/${MODEL}`, "--prompt", prompt, "--chat", "--json", "-n", "12"),
  );
  const q = new URLSearchParams({ model: `${server.url}/models/${MODEL}`, prompt, max_tokens: "12" });
  await openPage(page, server);
  await page.goto(`${server.url}/target/vite-app/dist/index.html?${q}`);
  await expect(page).toHaveTitle("done", { timeout: 60_000 });
  const out = JSON.parse((await page.textContent("#out")) ?? "{}");
  expect(out).toEqual({ backend: { kind: "wasm", build: "relaxed", threads: 1 }, text: expected.text });
});
