/**
 * The official BitNet b1.58 2B4T file as the package meets it: a full-size stand-in with
 * the real file's exact header (1,187,801,280 bytes, random weights; synthesized here,
 * never committed) loads over HTTP, and a chat with a system prompt feeds exactly the
 * prompt ids the CLI's `chat-prompt` prints: the 2B4T format, Llama-3 pre-tokenization.
 */
import { expect, test } from "@playwright/test";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cli, openPage } from "./helpers.js";
import { ROOT, startServer, type TestServer } from "./server.js";

const FILE = "official-2b4t-I2_S.gguf";
const SMALL = "official-tiny-I2_S.gguf";
const SIZE = 1_187_801_280;
const DIR = join(ROOT, "target/browser-fixtures");
const MESSAGES = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "What is 1 + 1? Answer <|eot_id|> briefly." },
];

let server: TestServer;
test.beforeAll(async () => {
  mkdirSync(DIR, { recursive: true });
  const path = join(DIR, FILE);
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    /* not yet written */
  }
  if (size !== SIZE) {
    cli(
      "synth",
      "--shape",
      "2b4t",
      "--wtype",
      "I2_S",
      "--layout",
      "official",
      "--vocab",
      "tests/fixtures/llama3-vocab.gguf",
      "--out",
      path,
    );
  }
  expect(statSync(path).size).toBe(SIZE);
  cli(
    "synth",
    "--shape",
    "tiny",
    "--wtype",
    "I2_S",
    "--layout",
    "official",
    "--vocab",
    "tests/fixtures/llama3-vocab.gguf",
    "--out",
    join(DIR, SMALL),
  );
  writeFileSync(join(DIR, "official-messages.json"), JSON.stringify(MESSAGES));
  server = await startServer();
});
test.afterAll(async () => {
  await server?.close();
});

test("the full-size official stand-in loads and its chat prompt ids equal the CLI's", async ({ page }) => {
  test.setTimeout(600_000);
  const messagesFile = join(DIR, "official-messages.json");
  const expected = JSON.parse(cli("chat-prompt", "--model", join(DIR, FILE), "--messages", messagesFile));
  expect(expected.chat_format.format).toBe("bitnet-2b4t");

  await openPage(page, server);
  const r = await page.evaluate(
    async ({ url, messages }) => {
      const { CreateEngine } = (window as any).bitnet;
      const t0 = performance.now();
      const engine = await CreateEngine({ model: url, cache: false, nCtx: 256 });
      const loadMs = performance.now() - t0;
      const reply = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 2 });
      await engine.unload();
      return { loadMs, load: engine.load, reply };
    },
    { url: `${server.url}/models/${FILE}`, messages: MESSAGES },
  );
  console.log(
    `official stand-in: ${(SIZE / 1e9).toFixed(2)} GB loaded in ${(r.loadMs / 1000).toFixed(1)} s (${r.load.backend.build})`,
  );
  expect(r.load.bytes).toBe(SIZE);
  const info = r.load.info;
  expect(info.architecture).toBe("bitnet-b1.58");
  expect(info.nLayer).toBe(30);
  expect(info.chatFormat.format).toBe("bitnet-2b4t");
  expect(info.preTokenizer.name).toBe("llama3");
  expect(info.stopTokens).toEqual([128001, 128009]);
  expect([info.bosToken, info.eosToken, info.eotToken]).toEqual([128000, 128001, 128009]);
  // The worker fed exactly the CLI's ids; the user's "<|eot_id|>" stayed text.
  expect(r.reply.prompt_ids).toEqual(expected.ids);
  expect(r.reply.prompt_ids.filter((id: number) => id === 128009).length).toBe(2);
  expect(r.reply.usage.completion_tokens).toBeGreaterThan(0);
});

test("chatTemplate and preTokenizer give bitnet.cpp's prompt and ids, or a template of one's own", async ({ page }) => {
  const messagesFile = join(DIR, "official-messages.json");
  const asWritten = JSON.parse(
    cli("chat-prompt", "--model", join(DIR, SMALL), "--messages", messagesFile, "--chat-format", "gguf"),
  );
  expect(asWritten.text).toBe(
    "<|begin_of_text|>Human: What is 1 + 1? Answer <|eot_id|> briefly.\n\nBITNETAssistant: <|end_of_text|>",
  );
  await openPage(page, server);
  const r = await page.evaluate(
    async ({ url, messages }) => {
      const { CreateEngine } = (window as any).bitnet;
      const run = async (opts: object) => {
        const engine = await CreateEngine({ model: url, cache: false, nCtx: 128, ...opts });
        const reply = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 1 });
        const ids = await engine.tokenize("1 + 1 =");
        await engine.unload();
        return { info: engine.load.info, prompt: reply.prompt_ids, ids };
      };
      return {
        gguf: await run({ chatTemplate: "gguf", preTokenizer: "default" }),
        own: await run({ chatTemplate: "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}" }),
      };
    },
    { url: `${server.url}/models/${SMALL}`, messages: MESSAGES },
  );
  expect(r.gguf.info.chatFormat.format).toBe("gguf");
  expect(r.gguf.info.preTokenizer.name).toBe("default");
  // bitnet.cpp's ids for this text on the real file (its DEFAULT pre-tokenizer).
  expect(r.gguf.ids).toEqual([128000, 16, 220, 10, 220, 16, 220, 28]);
  expect(r.gguf.prompt.at(-1)).toBe(128001);
  expect(r.own.info.chatFormat.format).toBe("jinja");
  expect(r.own.info.preTokenizer.name).toBe("llama3");
  expect(r.own.ids).toEqual([128000, 16, 489, 220, 16, 284]);
  expect(r.own.prompt.filter((id: number) => id === 128009)).toEqual([]);
});
