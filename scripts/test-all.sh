#!/usr/bin/env bash
# Every test of the project. Run from anywhere; installs only the npm packages of the
# lock file and cargo-fuzz (see .ci/run for the rest): needs the wasm32 target,
# wasm-bindgen-test-runner (wasm-bindgen-cli), the dated nightly of scripts/toolchains.sh,
# a C++ compiler (libFuzzer), wgpu adapters (natively: mesa-vulkan-drivers for Vulkan,
# libegl-mesa0 + libgl1-mesa-dri for OpenGL ES) and, for the
# browser runs, chromium + chromedriver.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage's wall time, printed at the end (CI's budget is the sum: docs/testing.md).
timings=()
stage_name=""
stage_start=$SECONDS
stage() {
  if [ -n "$stage_name" ]; then timings+=("$(printf '%5ds  %s' $((SECONDS - stage_start)) "$stage_name")"); fi
  stage_name=$1
  stage_start=$SECONDS
  if [ -n "$1" ]; then echo "== $1"; fi
}
report_timings() {
  stage ""
  echo "== wall time per stage (total ${SECONDS}s)"
  printf '%s\n' "${timings[@]}"
}
trap report_timings EXIT

# The CLI enables the engine's `gpu` feature by default, so this run includes the wgpu
# backend's tests (every shader vs the scalar reference, fixture parity, greedy tokens): they
# need an adapter (lavapipe from mesa-vulkan-drivers will do; see .ci/run).
stage "Rust habits: formatting, and clippy with warnings as errors"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "native: engine, GPU backend, CLI (unit, property, fixture parity, malformed GGUF, sessions, CLI)"
cargo test --workspace --locked

stage "the GPU backend again on a second stack: wgpu's OpenGL ES backend (EGL) on Mesa's llvmpipe"
# The run above took Vulkan (lavapipe: subgroup and plain paths); GL has no subgroups, so
# every shader test and the fixture parity run on its plain path.
WGPU_BACKEND=gl cargo test --locked -p bitnet-engine --features gpu --test gpu -- --show-output
WGPU_BACKEND=gl cargo test --locked -p bitnet-engine --features gpu --lib gpu:: -- --show-output

stage "fuzz: every committed corpus input through the libFuzzer targets, then short seeded runs"
./scripts/fuzz-replay.sh

# The single-threaded CPU builds' target features, from web/ts/wasm-builds.json.
. scripts/wasm-builds.sh
declare -A flags=()
while IFS='|' read -r name target_features _ _; do
  flags[$name]="${target_features:+-C target-feature=$target_features}"
done < <(wasm_builds)
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
wasm_test() { # variant, then "node" or "browser"
  stage "wasm ($1 build) in $2: kernels vs scalar, fixture parity, Engine API"
  if [ "$2" = browser ]; then export WASM_BINDGEN_USE_BROWSER=1; else unset WASM_BINDGEN_USE_BROWSER; fi
  # --release: the profile of scripts/build-wasm.sh, so the package build reuses these compiles.
  CARGO_TARGET_DIR="target/wasm-$1" RUSTFLAGS="${flags[$1]}" \
    cargo test --locked --release --target wasm32-unknown-unknown -p bitnet-web
}
wasm_test scalar node
wasm_test simd128 node
wasm_test simd128 browser
# Node 20's V8 (11.3) only knows a pre-standard relaxed SIMD, whose dot product gives
# other results: the relaxed build is tested in Chromium, which ships the standard one.
wasm_test relaxed browser

stage "npm package: build (wasm + TypeScript)"
npm ci --no-audit --no-fund
stage "TypeScript habits: Biome (format + lint) and tsc over the browser tests"
npm run lint
npm run build
stage "chat app (www/): type check and Vite build"
# npm install, not npm ci: the registry reached here lacks some of Rollup's optional
# per-platform packages, so the lock file cannot list them and npm ci refuses it.
(cd www && npm install --no-audit --no-fund && npm run build)
stage "Playwright in headless Chromium: the package, then the chat app"
# The tests compare with `cargo run --profile test -p bitnet-cli`: build it first, outside
# their timeouts (the test profile reuses the dependencies `cargo test` compiled).
cargo build --locked --profile test -p bitnet-cli
npx playwright test -c tests/browser/playwright.config.ts
