#!/usr/bin/env bash
# Every test of the project. Run from anywhere; installs only the npm packages of the
# lock file and cargo-fuzz (see .ci/run for the rest): needs the wasm32 target,
# wasm-bindgen-test-runner (wasm-bindgen-cli), the dated nightly of scripts/toolchains.sh,
# a C++ compiler (libFuzzer), wgpu adapters (natively: mesa-vulkan-drivers for Vulkan,
# libegl-mesa0 + libgl1-mesa-dri for OpenGL ES) and, for the browser runs, Debian's
# chromium + chromium-driver, firefox-esr, webkit2gtk-driver (WebKitWebDriver and
# MiniBrowser) and xvfb.
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
on_exit() {
  # A stage that failed leaves no background job behind.
  if [ -n "${fuzz_pid:-}" ]; then kill "$fuzz_pid" 2>/dev/null || true; fi
  report_timings
}
trap on_exit EXIT

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
# --workspace, as above: the same features, so nothing is compiled again.
WGPU_BACKEND=gl cargo test --workspace --locked --test gpu -- --show-output
WGPU_BACKEND=gl cargo test --workspace --locked --lib -- --show-output gpu::

# The fuzz replay runs its targets one at a time on one core: it goes on in the background
# while the wasm stages compile and test, and is waited for before the package build.
fuzz_log=target/fuzz-replay.log
mkdir -p target
fuzz_start=$SECONDS
./scripts/fuzz-replay.sh >"$fuzz_log" 2>&1 &
fuzz_pid=$!

# The single-threaded CPU builds' target features, from web/ts/wasm-builds.json.
. scripts/wasm-builds.sh
declare -A flags=()
while IFS='|' read -r name target_features _ _; do
  flags[$name]="${target_features:+-C target-feature=$target_features}"
done < <(wasm_builds)
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
# wasm-bindgen-test-runner gives a whole browser run 20 s unless told otherwise; the wasm
# suite takes 18 s in Chromium on an idle 2-core machine and more beside the fuzzer.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
stage "npm packages of the lock file (the browsers' drivers among them)"
npm ci --no-audit --no-fund
wasm_test() { # variant, then node | chromium | firefox | webkit
  stage "wasm ($1 build) in $2: kernels vs scalar, fixture parity, Engine API"
  local runner=wasm-bindgen-test-runner
  case $2 in
    node) unset WASM_BINDGEN_USE_BROWSER ;;
    chromium) export WASM_BINDGEN_USE_BROWSER=1 ;;
    # wasm-bindgen-test-runner serves the page; engines.mjs drives Firefox or WebKit to it.
    *) runner="$PWD/tests/browser/wasm-test-runner.mjs" ;;
  esac
  # --release: the profile of scripts/build-wasm.sh, so the package build reuses these compiles.
  BROWSER_ENGINE=$2 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$runner \
    CARGO_TARGET_DIR="target/wasm-$1" RUSTFLAGS="${flags[$1]}" \
    cargo test --locked --release --target wasm32-unknown-unknown -p bitnet-web
}
# The scalar build is not run here: its kernels are the scalar reference every SIMD
# build's kernels are compared with inside wasm, and Playwright runs it in each engine.
# Every engine runs the SIMD128 build; engines differ in relaxed SIMD, which is what the
# kernel self-test is for. Node 20's V8 (11.3) only knows a pre-standard relaxed SIMD,
# whose dot product gives other results, and WebKit validates none (JavaScriptCore has no
# relaxed SIMD): the relaxed build runs in Chromium and Firefox.
for engine in node chromium firefox webkit; do wasm_test simd128 "$engine"; done
for engine in chromium firefox; do wasm_test relaxed "$engine"; done

stage "fuzz (since the GPU stage, beside the wasm stages): every committed corpus input through the libFuzzer targets, then short seeded runs"
fuzz_ok=true
wait "$fuzz_pid" || fuzz_ok=false
cat "$fuzz_log"
echo "== fuzz: ran $((SECONDS - fuzz_start))s in all"
$fuzz_ok

stage "TypeScript habits: Biome (format + lint) and tsc over the browser tests"
npm run lint
stage "npm package: the wasm builds and the TypeScript"
npm run build
stage "chat app (www/): type check and Vite build"
# npm install, not npm ci: the registry reached here lacks some of Rollup's optional
# per-platform packages, so the lock file cannot list them and npm ci refuses it.
(cd www && npm install --no-audit --no-fund && npm run build)
stage "Playwright: the package and the chat app in Chromium, then in Firefox and WebKit"
# The tests compare with the CLI that `cargo test --workspace` built (tests/browser/helpers.ts).
npx playwright test -c tests/browser/playwright.config.ts
