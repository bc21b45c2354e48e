// A peer's WASI command-line build (bitnet.c's, from scripts/build-bitnet-c.sh) under
// Node's node:wasi, with the model's folder as /model (called by bench.mjs):
//   node scripts/bench-peer-wasi.mjs PROGRAM.wasm MODEL.gguf [ARGS...]
// The program is run as `PROGRAM /model/MODEL.gguf ARGS...`, with this process's
// environment; its exit status becomes this process's.
import { readFileSync } from "node:fs";
import path from "node:path";
import { WASI } from "node:wasi";

const [program, model, ...rest] = process.argv.slice(2);
if (!program || !model) {
  console.error("usage: node scripts/bench-peer-wasi.mjs PROGRAM.wasm MODEL.gguf [ARGS...]");
  process.exit(2);
}
const wasi = new WASI({
  version: "preview1",
  args: [path.basename(program), `/model/${path.basename(model)}`, ...rest],
  env: process.env,
  preopens: { "/model": path.dirname(path.resolve(model)) },
  returnOnExit: true,
});
const module = await WebAssembly.compile(readFileSync(program));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
