/**
 * The engine's WebAssembly builds and how the worker picks one: the fastest build this
 * browser validates, whose kernels pass a self-test against the scalar reference. The
 * `-threads` builds also need a cross-origin-isolated page (a shared memory) and start
 * a pool of threads on it. The list is WASM_BUILDS (wasm-builds.json); the glue
 * modules below are imported one by one because bundlers need static import paths.
 */
import * as relaxed from "../wasm/relaxed/bitnet_web.js";
import * as relaxedThreads from "../wasm/relaxed-threads/bitnet_web.js";
import * as scalar from "../wasm/scalar/bitnet_web.js";
import * as simd128 from "../wasm/simd128/bitnet_web.js";
import * as simd128Threads from "../wasm/simd128-threads/bitnet_web.js";
import * as webgpu from "../wasm/webgpu/bitnet_web.js";
import { BitnetError } from "./errors.js";
import type { PoolThreadStart } from "./protocol.js";
import type { BuildChoice, PassedOver, WasmBuild, WasmVariant } from "./types.js";
import { WASM_BUILDS, type WasmBuildSpec } from "./wasm-builds.js";

export type Glue = typeof simd128;
type ThreadsGlue = typeof simd128Threads;
export type CpuEngine = InstanceType<Glue["Engine"]>;
/** The webgpu build has every method of the CPU builds plus the GPU ones. */
export type GpuEngine = InstanceType<typeof webgpu.Engine>;

/** How long a pool thread may take to start: tens of milliseconds when all is well. */
const POOL_START_MS = 20_000;

const build = (glue: unknown, dir: WasmBuild) => ({
  glue: glue as Glue,
  wasm: new URL(`../wasm/${dir}/bitnet_web_bg.wasm`, import.meta.url),
});

const builds: Record<WasmBuild, { glue: Glue; wasm: URL }> = {
  webgpu: build(webgpu, "webgpu"),
  "relaxed-threads": build(relaxedThreads, "relaxed-threads"),
  "simd128-threads": build(simd128Threads, "simd128-threads"),
  relaxed: build(relaxed, "relaxed"),
  simd128: build(simd128, "simd128"),
  scalar: build(scalar, "scalar"),
};
for (const b of WASM_BUILDS)
  if (!(b.name in builds)) throw new BitnetError("worker", `wasm-builds.json names ${b.name}, which has no glue here`);

export const glueOf = (b: WasmBuild): Glue => builds[b].glue;
export const specOf = (b: WasmBuild): WasmBuildSpec => WASM_BUILDS.find((s) => s.name === b)!;

// The smallest modules using a SIMD128 and a relaxed-SIMD instruction.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15,
  253, 128, 2, 11,
]);

/** The builds `auto` tries, fastest first, that this page can run, and why each of the
 * others is passed over. */
function candidates(wanted: WasmVariant | "webgpu", threads: number): { tries: WasmBuild[]; passedOver: PassedOver[] } {
  const validates: Record<string, boolean> = {
    simd128: WebAssembly.validate(SIMD_PROBE),
    "relaxed-simd": WebAssembly.validate(RELAXED_PROBE),
  };
  const missingFeature = (b: WasmBuildSpec) => b.targetFeatures.find((f) => validates[f] !== true);
  if (wanted !== "auto") {
    const missing = missingFeature(specOf(wanted));
    if (missing)
      throw new BitnetError(
        "unsupported-device",
        `the ${wanted} build does not run in this browser: its WebAssembly does not validate ${missing}`,
      );
    return { tries: [wanted], passedOver: [] };
  }
  const tries: WasmBuild[] = [];
  const passedOver: PassedOver[] = [];
  for (const b of WASM_BUILDS) {
    if (b.gpu) continue;
    const missing = missingFeature(b);
    let why: string | null = null;
    if (missing) why = `this browser's WebAssembly does not validate ${missing}`;
    else if (b.threads && threads <= 1) why = "one thread runs (see threadChoice)";
    // Threads need a shared memory, which browsers give only to cross-origin-isolated pages.
    else if (b.threads && self.crossOriginIsolated !== true)
      why = "the page is not cross-origin isolated (COOP + COEP headers), so it has no shared memory";
    else if (b.threads && typeof SharedArrayBuffer === "undefined")
      why = "the page is cross-origin isolated, but this browser gives it no SharedArrayBuffer";
    if (why) passedOver.push({ build: b.name, why });
    else tries.push(b.name);
  }
  return { tries, passedOver };
}

/** A `-threads` build's pool: `threads` workers that each instantiate the module on the
 * same shared memory and become one of rayon's threads (pool-thread.ts). */
export interface Pool {
  build: WasmBuild;
  threads: number;
  /** The page's name for the pool's workers, to stop them with. */
  id: number;
}

/**
 * Where pool threads come from: the page starts them and passes each the start message,
 * and their answers back. Not `new Worker` here: Firefox's constructor of a worker inside
 * a worker at times never returns (seen on a busy machine, about one load in five on the
 * chat app's page), which leaves the engine's worker blocked for good; a page's
 * `new Worker` does not block. (Not a MessagePort to each thread either: Firefox refuses
 * a shared memory sent to a port still on its way to its worker.)
 */
export interface PoolHost {
  /** `threads` new pool threads, each sent `start`; `ready` rejects with why one failed. */
  start(threads: number, start: PoolThreadStart): { id: number; ready: Promise<void> };
  /** Ends the pool's workers (a pool whose build failed its self-test). */
  stop(id: number): void;
}

/**
 * Instantiates the build `wanted` names, or for `auto` the first candidate that loads
 * and passes the kernel self-test (failures go to `log` and into the choice's
 * `passedOver`). A worker keeps one pool for its life: `pool` is the one it has, and the
 * result says which it has after. `breakSelfTestOf` (tests only) makes that build's
 * self-test see a wrong kernel result.
 */
export async function pickBuild(
  wanted: WasmVariant | "webgpu",
  threads: number,
  pool: Pool | null,
  host: PoolHost,
  log: (...args: unknown[]) => void,
  breakSelfTestOf?: WasmBuild,
): Promise<{ build: WasmBuild; pool: Pool | null; choice: BuildChoice }> {
  const { tries, passedOver } = candidates(wanted, threads);
  for (const b of tries) {
    // A pool started for a build that then fails its self-test is stopped again.
    let started: Pool | null = null;
    try {
      let next = pool;
      if (specOf(b).threads && pool) next = reusePool(pool, b);
      else if (specOf(b).threads) {
        started = await startPool(b, threads, host);
        next = started;
      } else await builds[b].glue.default({ module_or_path: builds[b].wasm });
      // Some engines ship a pre-standard relaxed SIMD with other results: trust only
      // a build whose kernels agree with the scalar reference here.
      builds[b].glue.kernelSelfTest(b === breakSelfTestOf);
      const reason =
        wanted !== "auto"
          ? "asked for"
          : passedOver.length === 0
            ? "the fastest build"
            : "the fastest build that runs here";
      // Builds failed here join those left out before trying: list them all fastest first.
      const rank = (p: PassedOver) => WASM_BUILDS.findIndex((s) => s.name === p.build);
      passedOver.sort((x, y) => rank(x) - rank(y));
      return { build: b, pool: next, choice: { reason, passedOver } };
    } catch (e) {
      if (started) host.stop(started.id);
      if (wanted !== "auto") throw e;
      log(`bitnet-web: the ${b} build is not usable here:`, e);
      passedOver.push({ build: b, why: e instanceof Error ? e.message : String(e) });
    }
  }
  throw new BitnetError(
    "worker",
    `no WebAssembly build of the engine runs in this browser: ${passedOver.map((p) => `${p.build}: ${p.why}`).join("; ")}`,
  );
}

function reusePool(pool: Pool, b: WasmBuild): Pool {
  if (pool.build !== b) throw new BitnetError("worker", `this worker already runs the ${pool.build} build`);
  return pool;
}

/** Instantiates a `-threads` build here and starts its pool; while the engine computes,
 * this worker waits for the pool's threads. */
async function startPool(b: WasmBuild, threads: number, host: PoolHost): Promise<Pool> {
  const glue = builds[b].glue as unknown as ThreadsGlue;
  const res = await fetch(builds[b].wasm);
  if (!res.ok) throw new BitnetError("worker", `cannot fetch the ${b} build: HTTP ${res.status}`);
  const module = await WebAssembly.compile(await res.arrayBuffer());
  const exports = await glue.default({ module_or_path: module });
  const memory = exports.memory as WebAssembly.Memory;
  const { id, ready } = host.start(threads, { variant: b as PoolThreadStart["variant"], module, memory });
  let deadline = 0;
  try {
    // A thread that never answers must not hold the load at "Downloading 0 B" for good:
    // the build is passed over instead.
    const late = new Promise<never>((_, fail) => {
      deadline = self.setTimeout(
        () =>
          fail(new BitnetError("worker", `a pool thread did not start: no answer within ${POOL_START_MS / 1000} s`)),
        POOL_START_MS,
      );
    });
    await Promise.race([ready, late]);
    // Returns once every thread runs.
    glue.buildThreadPool(threads);
  } catch (e) {
    host.stop(id);
    throw e;
  } finally {
    clearTimeout(deadline);
  }
  return { build: b, threads, id };
}
