import type { ErrorKind } from "bitnet-web";

export interface Explained {
  title: string;
  /** What the person can do about it. */
  advice: string;
  detail: string;
}

// Keyed by string, not ErrorKind: a newer package may add kinds, which then get the
// generic message instead of breaking the build.
const ADVICE: Record<string, [string, string] | undefined> = {
  "corrupt-model": ["The model file is damaged", "Delete it under “Downloaded models” and download it again."],
  "unsupported-model": [
    "This model is not supported",
    "Use a BitNet b1.58 GGUF with I2_S weights, such as the official 2B4T file.",
  ],
  "invalid-model": ["This file is not a usable model", "Check that it is a complete BitNet b1.58 GGUF file."],
  tokenizer: ["The model's tokenizer could not be read", "The GGUF file lacks tokenizer data; try another file."],
  template: ["The model's chat template could not be used", "Try another model file."],
  "context-full": [
    "The conversation no longer fits in the model's memory",
    "Start a new chat, or raise the context length under Advanced and reload the model.",
  ],
  "out-of-memory": [
    "Not enough memory for this model",
    "Close other tabs or apps and try again, lower the context length under Advanced, or use a device with more memory.",
  ],
  "invalid-argument": ["A setting has an invalid value", "Open Settings and press “Defaults”."],
  aborted: ["Cancelled", "Nothing was lost; load the model again when you are ready."],
  io: ["The file could not be read", "If it is on removable storage, check that it is still connected."],
  "not-found": [
    "The model was not found at that address",
    "Check the URL; Hugging Face links must use /resolve/, not /blob/.",
  ],
  http: ["The server refused the download", "Try again later, or check the URL."],
  network: [
    "The network connection failed",
    "Check your connection. The download resumes where it stopped when you load the model again.",
  ],
  cors: [
    "That server does not allow downloads from web pages",
    "It sends no CORS headers. Download the file and pick it with “From this device” instead.",
  ],
  "wrong-content": [
    "That address did not return a model file",
    "The server sent something else (often a web page); check the URL.",
  ],
  "quota-exceeded": [
    "The browser has no room left to store the model",
    "Delete downloaded models you no longer need, or free disk space, then try again.",
  ],
  "checksum-mismatch": ["The downloaded file is not the expected one", "It was deleted; download it again."],
  "unsupported-device": [
    "That backend is not available here",
    "Choose “Automatic” or “WebAssembly (CPU)” under Advanced.",
  ],
  gpu: [
    "The GPU backend did not pass its check on this device",
    "Choose “Automatic” or “WebAssembly (CPU)” under Advanced: the CPU path gives correct answers.",
  ],
  panic: ["The engine crashed", "Reload the model. If it happens again, please report it with the details below."],
  worker: [
    "The engine could not start",
    "Reload the page. If you are offline, open the app once online first so it can be saved for offline use.",
  ],
  unloaded: ["No model is loaded", "Load a model to continue."],
};

/** A message for any thrown value; `BitnetError`s get advice by their `kind`. */
export function explain(e: unknown): Explained {
  const kind = (e as { kind?: ErrorKind })?.kind;
  const message = e instanceof Error ? e.message : String(e);
  const known = kind ? ADVICE[kind] : undefined;
  if (known) return { title: known[0], advice: known[1], detail: message };
  return { title: "Something went wrong", advice: "Reload the page and try again.", detail: message };
}
