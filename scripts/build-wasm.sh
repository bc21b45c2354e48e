#!/usr/bin/env bash
# Builds the six WebAssembly variants of the engine and their JS bindings:
#   dist/wasm/scalar   no SIMD (reference, and for comparisons)
#   dist/wasm/simd128  WASM SIMD128 (the default)
#   dist/wasm/relaxed  SIMD128 + relaxed SIMD (picked at run time where supported)
#   dist/wasm/webgpu   SIMD128 + the WebGPU backend (wgpu; larger, loaded only for the GPU)
#   dist/wasm/simd128-threads, dist/wasm/relaxed-threads
#                      the same on several threads (web workers on a shared memory; pages
#                      must be cross-origin isolated)
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli pinned to the
# wasm-bindgen version in Cargo.lock, and for the threads builds the nightly toolchain
# with rust-src (std is rebuilt with atomics) (.ci/run installs all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchains.sh
# A shared memory that can grow to 4 GiB, imported so that every worker gets the same
# one, and the thread-local storage exports wasm-bindgen's thread start-up needs.
threads="+atomics,+bulk-memory,+mutable-globals -C link-arg=--shared-memory -C link-arg=--import-memory
  -C link-arg=--max-memory=4294967296 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
declare -A flags=(
  [scalar]=""
  [simd128]="-C target-feature=+simd128"
  [relaxed]="-C target-feature=+simd128,+relaxed-simd"
  [webgpu]="-C target-feature=+simd128"
  [simd128-threads]="-C target-feature=+simd128,$threads"
  [relaxed-threads]="-C target-feature=+simd128,+relaxed-simd,$threads"
)
declare -A features=([webgpu]="--features webgpu" [simd128-threads]="--features threads" [relaxed-threads]="--features threads")
for v in ${VARIANTS:-scalar simd128 relaxed webgpu simd128-threads relaxed-threads}; do
  cargo=(cargo)
  if [[ $v == *-threads ]]; then cargo=(cargo "+$NIGHTLY" -Z build-std=panic_abort,std); fi
  # shellcheck disable=SC2086
  CARGO_TARGET_DIR="target/wasm-$v" RUSTFLAGS="$(echo ${flags[$v]})" \
    "${cargo[@]}" build --locked --release --target wasm32-unknown-unknown -p bitnet-web ${features[$v]:-}
  rm -rf "dist/wasm/$v"
  wasm-bindgen --target web --out-dir "dist/wasm/$v" \
    "target/wasm-$v/wasm32-unknown-unknown/release/bitnet_web.wasm"
  raw=$(stat -c %s "dist/wasm/$v/bitnet_web_bg.wasm")
  gz=$(gzip -9 -c "dist/wasm/$v/bitnet_web_bg.wasm" | wc -c)
  echo "{\"variant\":\"$v\",\"wasm_bytes\":$raw,\"gzip_bytes\":$gz}"
done
