#!/usr/bin/env bash
# Every test of the project. Run from anywhere; installs nothing (see .ci/run for that):
# needs the wasm32 target, wasm-bindgen-test-runner (wasm-bindgen-cli) and, for the
# browser run, chromium + chromedriver.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== native: engine, CLI (unit, property, fixture parity, malformed GGUF, sessions, CLI)"
cargo test --workspace --locked

# Node 20's V8 needs a flag for relaxed SIMD; the test runner starts `node` by name.
shim=$(mktemp -d)
printf '#!/bin/sh\nexec %s --experimental-wasm-relaxed-simd "$@"\n' "$(command -v node)" > "$shim/node"
chmod +x "$shim/node"

declare -A flags=(
  [scalar]=""
  [simd128]="-C target-feature=+simd128"
  [relaxed]="-C target-feature=+simd128,+relaxed-simd"
)
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
for v in scalar simd128 relaxed; do
  echo "== wasm ($v build) under Node: kernels vs scalar, fixture parity, Engine API"
  PATH="$shim:$PATH" CARGO_TARGET_DIR="target/wasm-$v" RUSTFLAGS="${flags[$v]}" \
    cargo test --locked --target wasm32-unknown-unknown -p bitnet-web
done

echo "== wasm (simd128 build) in headless Chromium"
WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}" \
  CARGO_TARGET_DIR=target/wasm-simd128 RUSTFLAGS="${flags[simd128]}" \
  cargo test --locked --target wasm32-unknown-unknown -p bitnet-web
rm -rf "$shim"
