/** The one loaded engine, and who wants to know when it changes. */
import type { Engine } from "bitnet-web";

type Listener = (engine: Engine | null, name: string) => void;

let engine: Engine | null = null;
let name = "";
const listeners: Listener[] = [];

export function currentEngine(): Engine | null {
  return engine;
}

export async function setEngine(next: Engine | null, label = ""): Promise<void> {
  const old = engine;
  engine = next;
  name = label;
  for (const l of listeners) l(engine, name);
  // The old model's memory goes back before the next one grows: unload it after the swap.
  if (old && old !== next) await old.unload();
}

/** The same engine, changed: e.g. its backend after a GPU loss moved it to WASM. */
export function engineUpdated(): void {
  for (const l of listeners) l(engine, name);
}

export function onEngineChange(l: Listener): void {
  listeners.push(l);
}
