/**
 * The three browser engines behind one small interface, so that one test list runs in
 * each: Chromium through Playwright, Firefox ESR through WebDriver BiDi (puppeteer-core;
 * Firefox speaks BiDi itself, no geckodriver), and WebKitGTK (Safari's engine) through
 * W3C WebDriver classic (Debian's WebKitWebDriver driving MiniBrowser, under Xvfb when
 * there is no display). Debian's browsers only: a test tool's own browser download is
 * refused on this network.
 *
 * A tab offers what the tests need and nothing engine-specific: open a URL, run a
 * function in the page (its promise awaited, its result as JSON), reload, and act on an
 * element (click, fill, read its text).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** @typedef {"chromium" | "firefox" | "webkit"} EngineName */
export const ENGINES = /** @type {EngineName[]} */ (["chromium", "firefox", "webkit"]);

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
/** Chromium's flags for this closed network: no background calls out, no first-run UI. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
const FIREFOX = process.env.FIREFOX ?? "/usr/bin/firefox-esr";
const WEBKIT_DRIVER = process.env.WEBKIT_DRIVER ?? "/usr/bin/WebKitWebDriver";
const MINIBROWSER = process.env.MINIBROWSER ?? "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
/** How long a function run in the page may take. */
const SCRIPT_TIMEOUT_MS = 170_000;

/**
 * @typedef {object} Tab
 * @property {EngineName} engine
 * @property {(url: string) => Promise<void>} goto
 * @property {<A, R>(fn: (arg: A) => R | Promise<R>, arg?: A) => Promise<R>} evaluate
 *   Runs `fn(arg)` in the page; `fn` must not close over anything (it is sent as source).
 * @property {() => Promise<void>} reload
 * @property {(css: string) => Promise<void>} click
 * @property {(css: string, text: string) => Promise<void>} fill
 * @property {() => Promise<void>} close
 */

/**
 * @typedef {object} Browser
 * @property {EngineName} engine
 * @property {string} version  The browser's own version string.
 * @property {() => Promise<Tab>} newTab  A tab in a fresh profile (no cache, no storage).
 * @property {() => Promise<void>} close
 */

/**
 * Starts `engine`. `onDisk` (Chromium): a profile in a fresh directory, as a user's browser
 * has, instead of Playwright's off-the-record context, whose origin private file system
 * lives in the browser process's memory: there a 5 KB read of a sync access handle took
 * 0.29 ms, from a profile on disk 5 µs (one worker, 1,000 reads), which decides what the
 * exact heads' reads of the offline copy cost.
 * @param {EngineName} engine
 * @param {{ onDisk?: boolean }} [options]
 * @returns {Promise<Browser>}
 */
export async function launch(engine, options = {}) {
  if (engine === "chromium") return options.onDisk ? launchChromiumOnDisk() : launchChromium();
  if (engine === "firefox") return launchFirefox();
  if (engine === "webkit") return launchWebKit();
  throw new Error(`unknown browser engine ${engine}`);
}

/** Polls `fn(arg)` in the tab until it returns a truthy value, which it returns. */
export async function waitFor(tab, fn, arg, timeoutMs = 60_000, what = "the page") {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await tab.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > end) {
      // What the page shows says why (an error alert, a stuck status line), where the
      // engine's driver gives no screenshot to the report.
      const shown = await tab
        // biome-ignore lint/performance/useDomNodeTextContent: the text shown, not the hidden
        .evaluate(() => document.body?.innerText.replace(/\s+/g, " ").trim().slice(0, 1500) ?? "")
        .catch((e) => `(the page could not be read: ${e})`);
      throw new Error(`${tab.engine}: timed out after ${timeoutMs} ms waiting for ${what}; the page shows: ${shown}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

async function launchChromium() {
  const { chromium } = await import("@playwright/test");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    engine: "chromium",
    version: browser.version(),
    async newTab() {
      const context = await browser.newContext();
      return chromiumTab(await context.newPage(), () => context.close());
    },
    close: () => browser.close(),
  };
}

async function launchChromiumOnDisk() {
  const { chromium } = await import("@playwright/test");
  const profile = mkdtempSync(join(tmpdir(), "bitnet-profile-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    engine: "chromium",
    // A persistent context has no Browser object to ask.
    version: /[\d.]+/.exec(spawnSync(CHROMIUM, ["--version"]).stdout.toString())?.[0] ?? "",
    async newTab() {
      const page = await context.newPage();
      return chromiumTab(page, () => page.close());
    },
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A tab over a Playwright Chromium page; `close` ends what it was opened in. */
function chromiumTab(page, close) {
  return pageTab("chromium", page, { fill: (css, text) => page.fill(css, text), close });
}

async function launchFirefox() {
  const { default: puppeteer } = await import("puppeteer-core");
  const browser = await puppeteer.launch({
    browser: "firefox",
    protocol: "webDriverBiDi",
    executablePath: FIREFOX,
    headless: true,
    // "localhost" (the test servers' other origin) to 127.0.0.1, where they listen, not ::1.
    extraPrefsFirefox: { "network.dns.disableIPv6": true },
  });
  return {
    engine: "firefox",
    version: await browser.version(),
    async newTab() {
      const context = await browser.createBrowserContext();
      const page = await context.newPage();
      page.setDefaultTimeout(SCRIPT_TIMEOUT_MS);
      return pageTab("firefox", page, {
        // puppeteer has no fill: clear the field, then type into it.
        fill: async (css, text) => {
          await page.$eval(css, (el) => {
            el.value = "";
          });
          await page.type(css, text);
        },
        close: () => context.close(),
      });
    },
    close: () => browser.close(),
  };
}

/**
 * A tab over a Playwright or puppeteer page (their goto, evaluate, reload and click agree);
 * the page's console errors go to the test's output.
 * @param {EngineName} engine
 * @param {any} page
 * @param {Pick<Tab, "fill" | "close">} rest
 * @returns {Tab}
 */
function pageTab(engine, page, rest) {
  page.on("console", (m) => {
    if (m.type() === "error") console.log(`[${engine}] ${m.text()}`);
  });
  return {
    engine,
    goto: async (url) => void (await page.goto(url)),
    evaluate: (fn, arg) => page.evaluate(fn, arg),
    reload: async () => void (await page.reload()),
    click: (css) => page.click(css),
    ...rest,
  };
}

/** A free TCP port on the loopback interface. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.unref();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {import("node:net").AddressInfo} */ (s.address());
      s.close(() => ok(port));
    });
  });
}

/** A display for browsers that need one: the caller's, or a fresh Xvfb. */
async function display() {
  if (process.env.DISPLAY) return { name: process.env.DISPLAY, stop() {} };
  for (let n = 90 + (process.pid % 100); ; n++) {
    if (existsSync(`/tmp/.X11-unix/X${n}`) || existsSync(`/tmp/.X${n}-lock`)) continue;
    const xvfb = spawn("Xvfb", [`:${n}`, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"], { stdio: "ignore" });
    const end = Date.now() + 10_000;
    while (!existsSync(`/tmp/.X11-unix/X${n}`)) {
      if (xvfb.exitCode !== null || Date.now() > end) throw new Error(`Xvfb :${n} did not start`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
    return { name: `:${n}`, stop: () => xvfb.kill() };
  }
}

async function launchWebKit() {
  const screen = await display();
  const port = await freePort();
  const driver = spawn(WEBKIT_DRIVER, [`--port=${port}`], {
    // Safari gives a cross-origin-isolated page SharedArrayBuffer; WebKitGTK only with this.
    env: { ...process.env, DISPLAY: screen.name, JSC_useSharedArrayBuffer: "1" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let driverLog = "";
  driver.stderr.on("data", (d) => {
    driverLog = (driverLog + d).slice(-4000);
  });
  const base = `http://127.0.0.1:${port}`;
  /** One W3C WebDriver command; its `value`, or an Error with the driver's message. */
  const command = async (method, path, body) => {
    const res = await fetch(base + path, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const reply = await res.json();
    if (!res.ok || reply.value?.error)
      throw new Error(`WebKitWebDriver ${method} ${path}: ${reply.value?.error}: ${reply.value?.message}`);
    return reply.value;
  };
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      await command("GET", "/status");
      break;
    } catch (e) {
      if (driver.exitCode !== null || Date.now() > end)
        throw new Error(`WebKitWebDriver did not start: ${e}\n${driverLog}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }
  const version = spawnSync(MINIBROWSER, ["--version"], {
    encoding: "utf8",
    env: { ...process.env, DISPLAY: screen.name },
  }).stdout.trim();
  return {
    engine: "webkit",
    version: version || "WebKitGTK",
    async newTab() {
      // Each session is a new MiniBrowser; in automation mode its storage is ephemeral.
      const session = await command("POST", "/session", {
        capabilities: {
          alwaysMatch: {
            browserName: "MiniBrowser",
            "webkitgtk:browserOptions": { binary: MINIBROWSER, args: ["--automation"] },
          },
        },
      });
      const s = `/session/${session.sessionId}`;
      await command("POST", `${s}/timeouts`, { script: SCRIPT_TIMEOUT_MS, pageLoad: 120_000 });
      const element = async (css) => {
        const found = await command("POST", `${s}/element`, { using: "css selector", value: css });
        return Object.values(found)[0];
      };
      return {
        engine: "webkit",
        goto: async (url) => void (await command("POST", `${s}/url`, { url })),
        async evaluate(fn, arg) {
          // The page's promise settles into a plain object: a rejected one keeps its message.
          const script = `const done = arguments[arguments.length - 1];
            Promise.resolve().then(() => (${fn})(arguments[0])).then(
              (value) => done({ ok: true, value: value === undefined ? null : value }),
              (e) => done({ ok: false, message: String(e && e.message ? e.message : e) }));`;
          const r = await command("POST", `${s}/execute/async`, { script, args: [arg ?? null] });
          if (!r.ok) throw new Error(`webkit: the page's function threw: ${r.message}`);
          return r.value;
        },
        reload: async () => void (await command("POST", `${s}/refresh`, {})),
        click: async (css) => void (await command("POST", `${s}/element/${await element(css)}/click`, {})),
        async fill(css, text) {
          const id = await element(css);
          await command("POST", `${s}/element/${id}/clear`, {});
          await command("POST", `${s}/element/${id}/value`, { text });
        },
        async close() {
          await command("DELETE", s).catch(() => {});
        },
      };
    },
    async close() {
      driver.kill();
      screen.stop();
    },
  };
}
