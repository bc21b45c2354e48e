#!/usr/bin/env bash
# Builds the three WebAssembly variants of the engine and their JS bindings:
#   dist/wasm/scalar   no SIMD (reference, and for comparisons)
#   dist/wasm/simd128  WASM SIMD128 (the default)
#   dist/wasm/relaxed  SIMD128 + relaxed SIMD (picked at run time where supported)
#   dist/wasm/webgpu   SIMD128 + the WebGPU backend (wgpu; larger, loaded only for the GPU)
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli pinned to the
# wasm-bindgen version in Cargo.lock (.ci/run installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A flags=(
  [scalar]=""
  [simd128]="-C target-feature=+simd128"
  [relaxed]="-C target-feature=+simd128,+relaxed-simd"
  [webgpu]="-C target-feature=+simd128"
)
declare -A features=([webgpu]="--features webgpu")
for v in ${VARIANTS:-scalar simd128 relaxed webgpu}; do
  # shellcheck disable=SC2086
  CARGO_TARGET_DIR="target/wasm-$v" RUSTFLAGS="${flags[$v]}" \
    cargo build --locked --release --target wasm32-unknown-unknown -p bitnet-web ${features[$v]:-}
  rm -rf "dist/wasm/$v"
  wasm-bindgen --target web --out-dir "dist/wasm/$v" \
    "target/wasm-$v/wasm32-unknown-unknown/release/bitnet_web.wasm"
  raw=$(stat -c %s "dist/wasm/$v/bitnet_web_bg.wasm")
  gz=$(gzip -9 -c "dist/wasm/$v/bitnet_web_bg.wasm" | wc -c)
  echo "{\"variant\":\"$v\",\"wasm_bytes\":$raw,\"gzip_bytes\":$gz}"
done
