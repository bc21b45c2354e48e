/** The settings dialog: system prompt and sampling options, kept in IndexedDB. */
import type { SamplingOptions } from "bitnet-web";
import { $ } from "./dom";
import { getPref, setPref } from "./store";

export interface Settings {
  system: string;
  temperature: number;
  top_p: number;
  top_k: number;
  min_p: number;
  repetition_penalty: number;
  max_tokens: number;
  /** null: a new random seed for every reply. */
  seed: number | null;
}

// BitNet 2B4T falls into repetition loops without a penalty (its authors' known limitation).
export const DEFAULTS: Settings = {
  system: "You are a helpful assistant. Answer concisely.",
  temperature: 0.6,
  top_p: 0.9,
  top_k: 40,
  min_p: 0.05,
  repetition_penalty: 1.1,
  max_tokens: 512,
  seed: null,
};

const NUMBERS = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens"] as const;
const SLIDERS = new Set(["temperature", "top_p", "min_p", "repetition_penalty"]);

let current: Settings = { ...DEFAULTS };

export function settings(): Settings {
  return current;
}

export function samplingOptions(): SamplingOptions {
  const s = current;
  return {
    temperature: s.temperature,
    top_p: s.top_p,
    top_k: s.top_k,
    min_p: s.min_p,
    repetition_penalty: s.repetition_penalty,
    max_tokens: s.max_tokens,
    ...(s.seed === null ? {} : { seed: s.seed }),
  };
}

function input(name: string) {
  return $<HTMLInputElement | HTMLTextAreaElement>(`set-${name}`);
}

function show() {
  input("system").value = current.system;
  for (const k of NUMBERS) {
    input(k).value = String(current[k]);
    if (SLIDERS.has(k)) $<HTMLOutputElement>(`out-${k}`).value = String(current[k]);
  }
  input("seed").value = current.seed === null ? "" : String(current.seed);
}

function read(): Settings {
  const next = { ...current, system: input("system").value };
  for (const k of NUMBERS) {
    const el = input(k) as HTMLInputElement;
    const v = el.valueAsNumber;
    // An out-of-range number keeps the last valid value rather than reaching the engine.
    if (Number.isFinite(v) && el.checkValidity()) next[k] = v;
    if (SLIDERS.has(k)) $<HTMLOutputElement>(`out-${k}`).value = String(next[k]);
  }
  const seed = (input("seed") as HTMLInputElement).valueAsNumber;
  next.seed = Number.isInteger(seed) && seed >= 0 ? seed : null;
  return next;
}

export async function initSettings(): Promise<void> {
  current = { ...DEFAULTS, ...((await getPref<Partial<Settings>>("settings")) ?? {}) };
  show();
  const dialog = $<HTMLDialogElement>("settings-dialog");
  const save = () => {
    current = read();
    void setPref("settings", current);
  };
  $("settings-form").addEventListener("input", save);
  $("settings-form").addEventListener("submit", (e) => e.preventDefault());
  $("btn-settings").addEventListener("click", () => dialog.showModal());
  $("btn-settings-close").addEventListener("click", () => dialog.close());
  $("btn-settings-reset").addEventListener("click", () => {
    current = { ...DEFAULTS };
    show();
    void setPref("settings", current);
  });
  // A click on the backdrop (the dialog element itself, outside the form) closes it.
  dialog.addEventListener("click", (e) => {
    if (e.target === dialog) dialog.close();
  });
}
