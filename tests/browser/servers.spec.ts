/**
 * The app's server (`npm start`) and the test server answer a request whose %-escapes are
 * not valid UTF-8 with a 400 and keep serving: a hostile URL must not stop either.
 */
import { expect, test } from "@playwright/test";
import { startApp } from "./www-helpers.js";
import { startServer } from "./server.js";
import { MODEL } from "./helpers.js";

const MALFORMED = ["/%E0%A4%A", "/models/%FF", "/%"];

test("a malformed %-escape is a 400, and the servers go on serving", async () => {
  const app = await startApp();
  const models = await startServer();
  try {
    for (const [base, ok] of [
      [app.url, "/"],
      [models.url, `/models/${MODEL}`],
    ]) {
      for (const path of MALFORMED) expect((await fetch(base + path)).status, base + path).toBe(400);
      const good = await fetch(base + ok);
      expect(good.status).toBe(200);
      await good.arrayBuffer();
    }
  } finally {
    await app.close();
    await models.close();
  }
});
