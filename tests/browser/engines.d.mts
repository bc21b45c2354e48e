export type EngineName = "chromium" | "firefox" | "webkit";
export const ENGINES: EngineName[];

/** A page in one engine; see engines.mjs. */
export interface Tab {
  engine: EngineName;
  goto(url: string): Promise<void>;
  /** Runs `fn(arg)` in the page and resolves with its (awaited, JSON) result; `fn` is
   * sent as source, so it must not close over anything. */
  evaluate<R>(fn: () => R | Promise<R>): Promise<R>;
  evaluate<A, R>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
  reload(): Promise<void>;
  click(css: string): Promise<void>;
  fill(css: string, text: string): Promise<void>;
  close(): Promise<void>;
}

export interface Browser {
  engine: EngineName;
  version: string;
  /** A tab in a fresh profile (no cache, no storage). */
  newTab(): Promise<Tab>;
  close(): Promise<void>;
}

export function launch(engine: EngineName, options?: { onDisk?: boolean }): Promise<Browser>;
/** Debian's Chromium, and its flags for this closed network. */
export const CHROMIUM: string;
export const CHROMIUM_ARGS: string[];
/** A free TCP port on the loopback interface. */
export function freePort(): Promise<number>;
/** Polls `fn(arg)` in the tab until it returns a truthy value, which it returns. */
export function waitFor<A, R>(
  tab: Tab,
  fn: (arg: A) => R | Promise<R>,
  arg: A,
  timeoutMs?: number,
  what?: string,
): Promise<NonNullable<R>>;
