/** The models the picker offers. */
export const OFFICIAL_URL =
  "https://huggingface.co/microsoft/BitNet-b1.58-2B-4T-gguf/resolve/main/ggml-model-i2_s.gguf";

/** Served next to the app and precached by its service worker. */
export const BUNDLED_URL = new URL("models/brown-tiny-I2_S.gguf", document.baseURI).href;

export type Choice = "official" | "bundled" | "url" | "file";

/** A short name for a model URL or file, for the header and the cache list. */
export function modelName(source: string | File): string {
  if (source instanceof File) return source.name;
  if (source === OFFICIAL_URL) return "BitNet b1.58 2B4T";
  if (source === BUNDLED_URL) return "BitNet tiny (Brown corpus)";
  try {
    return decodeURIComponent(new URL(source).pathname.split("/").pop() || source);
  } catch {
    return source;
  }
}
