/** Every failure reaches callers as a `BitnetError` whose `kind` a program can branch on. */
export type ErrorKind =
  // From the engine (see engine/src/error.rs).
  | "corrupt-model"
  | "unsupported-model"
  | "invalid-model"
  | "tokenizer"
  | "template"
  | "context-full"
  | "out-of-memory"
  | "invalid-argument"
  | "aborted"
  | "io"
  // From the loader and the runtime.
  | "not-found"
  | "http"
  | "network"
  | "cors"
  | "wrong-content"
  | "quota-exceeded"
  | "checksum-mismatch"
  | "unsupported-device"
  | "gpu"
  | "panic"
  | "worker"
  | "unloaded";

export class BitnetError extends Error {
  readonly kind: ErrorKind;
  /** HTTP status for `not-found` / `http`. */
  readonly status?: number;

  constructor(kind: ErrorKind, message: string, status?: number) {
    super(message);
    this.name = "BitnetError";
    this.kind = kind;
    if (status !== undefined) this.status = status;
  }
}

/** What crosses the worker boundary (Error subclasses do not survive structured clone). */
export interface PlainError {
  kind: ErrorKind;
  message: string;
  status?: number;
}

export function toPlain(e: unknown): PlainError {
  if (e instanceof BitnetError) return { kind: e.kind, message: e.message, status: e.status };
  if (e instanceof Error) {
    // Errors thrown by the wasm engine carry `kind`.
    const kind = (e as { kind?: ErrorKind }).kind;
    if (kind) return { kind, message: e.message };
    if (e.name === "QuotaExceededError") return { kind: "quota-exceeded", message: e.message };
    if (e instanceof WebAssembly.RuntimeError || e.name === "RangeError") {
      return { kind: "out-of-memory", message: e.message };
    }
    return { kind: "worker", message: `${e.name}: ${e.message}` };
  }
  return { kind: "worker", message: String(e) };
}

export function fromPlain(p: PlainError): BitnetError {
  return new BitnetError(p.kind, p.message, p.status);
}
