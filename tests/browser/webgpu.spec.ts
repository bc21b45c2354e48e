/**
 * The WebGPU path in headless Chromium (SwiftShader's WebGPU, `--enable-unsafe-webgpu`):
 * `device: "webgpu"` loads the model onto the GPU after its self-test, gives the WASM
 * path's greedy text, and a lost device hands the conversation to WASM mid-chat.
 */
import { expect, test } from "@playwright/test";
import { MODEL, openPage } from "./helpers.js";
import { startServer, type TestServer } from "./server.js";

let server: TestServer;
test.beforeAll(async () => {
  server = await startServer();
});
test.afterAll(async () => {
  await server.close();
});

test("WebGPU gives the WASM path's greedy tokens, and a lost device continues the chat on WASM", async ({ page }) => {
  await openPage(page, server);
  const r = await page.evaluate(async (url) => {
    const { CreateEngine } = (window as any).bitnet;
    const first = [{ role: "user", content: "Name three colors." }];
    const turns = async (engine: any, between?: () => Promise<unknown>) => {
      const a = await engine.chat.completions.create({ messages: first, temperature: 0, max_tokens: 16 });
      await between?.();
      const next = [
        ...first,
        { role: "assistant", content: a.choices[0].message.content },
        { role: "user", content: "And three animals?" },
      ];
      const b = await engine.chat.completions.create({ messages: next, temperature: 0, max_tokens: 16 });
      return [a.choices[0].message.content, b.choices[0].message.content];
    };
    const wasm = await CreateEngine({ model: url, device: "wasm", cache: false });
    const wasmTurns = await turns(wasm);
    await wasm.unload();

    const lost: any[] = [];
    const gpu = await CreateEngine({
      model: url,
      device: "webgpu",
      cache: false,
      onDeviceLost: (e: any) => lost.push(e),
    });
    const backendBefore = gpu.backend;
    let destroyed = false;
    const gpuTurns = await turns(gpu, async () => {
      destroyed = await gpu.loseGpuForTesting();
    });
    const stats = await gpu.stats();
    await gpu.unload();
    const auto = await CreateEngine({ model: url, cache: false });
    await auto.unload();
    // Timed against WASM instead of passed over: SwiftShader emulates the GPU on the CPU.
    const measured = await CreateEngine({ model: url, cache: false, measureSoftwareGpu: true });
    const measuredReply = await measured.chat.completions.create({ messages: first, temperature: 0, max_tokens: 16 });
    await measured.unload();
    return {
      wasmTurns,
      gpuTurns,
      backendBefore,
      backendAfter: gpu.backend,
      lost,
      destroyed,
      stats,
      autoBackend: auto.backend,
      autoGpuError: auto.load.gpuError ?? null,
      autoDevice: auto.load.device,
      measuredBackend: measured.backend,
      measuredDevice: measured.load.device,
      measuredReply: measuredReply.choices[0].message.content,
    };
  }, `${server.url}/models/${MODEL}`);
  expect(r.backendBefore).toEqual({ kind: "webgpu", build: "webgpu", adapter: expect.any(String), threads: 1 });
  expect(r.gpuTurns[0]).toBe(r.wasmTurns[0]);
  expect(r.destroyed).toBe(true);
  expect(r.lost).toHaveLength(1);
  expect(r.lost[0].backend).toEqual({ kind: "wasm", build: "webgpu", threads: 1 });
  expect(r.backendAfter).toEqual({ kind: "wasm", build: "webgpu", threads: 1 });
  // The second turn ran on WASM after the loss, over the history refilled from tokens.
  expect(r.gpuTurns[1]).toBe(r.wasmTurns[1]);
  expect(r.stats.backend.kind).toBe("wasm");
  // `auto` does not take a software adapter: WASM is faster than an emulated GPU.
  expect(r.autoBackend).toEqual({ kind: "wasm", build: "relaxed", threads: 1 });
  expect(r.autoGpuError).toBeNull();
  expect(r.autoDevice.reason).toMatch(/software renderer/);
  // Measured, SwiftShader loses to WASM: the engine stays on the webgpu build's CPU
  // kernels, says why with both speeds, and answers as WASM does.
  expect(r.measuredBackend).toEqual({ kind: "wasm", build: "webgpu", threads: 1 });
  expect(r.measuredDevice.gpuTokensPerS).toBeGreaterThan(0);
  expect(r.measuredDevice.gpuTokensPerS).toBeLessThan(r.measuredDevice.wasmTokensPerS);
  expect(r.measuredDevice.reason).toMatch(/WebGPU \(.+\) decoded [\d.]+ tokens\/s, WASM [\d.]+: WASM is faster/);
  expect(r.measuredReply).toBe(r.wasmTurns[0]);
});
