import { type Backend, WASM_BUILDS } from "bitnet-web";

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** Decimal units, as download sizes are quoted on model hubs. */
export function bytes(n: number): string {
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 || n >= 100 ? 0 : n >= 10 ? 1 : 2)} ${UNITS[i]}`;
}

export function rate(bytesPerSecond: number): string {
  return `${bytes(bytesPerSecond)}/s`;
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** `{kind: "wasm", build: "relaxed"}` → "WASM · relaxed SIMD", a GPU → "WebGPU · adapter". */
export function backendLabel(b: Backend): string {
  if (b.kind === "webgpu") return `WebGPU · ${b.adapter ?? "GPU"}`;
  const kernels = WASM_BUILDS.find((w) => w.name === b.build)?.kernels ?? b.build;
  return `WASM · ${kernels}${b.threads > 1 ? ` · ${b.threads} threads` : ""}`;
}

export function relativeTime(ms: number, now = Date.now()): string {
  const s = (now - ms) / 1000;
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}
