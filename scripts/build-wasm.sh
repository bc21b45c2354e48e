#!/usr/bin/env bash
# Builds the engine's WebAssembly builds and their JS bindings into dist/wasm/<name>, one
# per entry of web/ts/wasm-builds.json (fastest first: the `-threads` builds run on web
# workers over a shared memory and need a cross-origin-isolated page; `relaxed` adds
# relaxed SIMD to SIMD128; `scalar` is the reference; `webgpu` adds the GPU backend and is
# loaded only for the GPU). VARIANTS="a b" builds only those.
# Needs: rustup target wasm32-unknown-unknown, wasm-bindgen-cli pinned to the
# wasm-bindgen version in Cargo.lock, and for the threads builds the nightly toolchain
# with rust-src (std is rebuilt with atomics) (.ci/run installs all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchains.sh
. scripts/wasm-builds.sh
# A shared memory that can grow to 4 GiB, imported so that every worker gets the same
# one, and the thread-local storage exports wasm-bindgen's thread start-up needs.
threads=",+atomics,+bulk-memory,+mutable-globals -C link-arg=--shared-memory -C link-arg=--import-memory
  -C link-arg=--max-memory=4294967296 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
wanted=" ${VARIANTS:-} "
while IFS='|' read -r v target_features cargo_features uses_threads; do
  if [ -n "${VARIANTS:-}" ] && [[ $wanted != *" $v "* ]]; then continue; fi
  rustflags="${target_features:+-C target-feature=$target_features}"
  cargo=(cargo)
  if [ "$uses_threads" = true ]; then
    rustflags+="$threads"
    cargo=(cargo "+$NIGHTLY" -Z build-std=panic_abort,std)
  fi
  # shellcheck disable=SC2086
  CARGO_TARGET_DIR="target/wasm-$v" RUSTFLAGS="$(echo $rustflags)" \
    "${cargo[@]}" build --locked --release --target wasm32-unknown-unknown -p bitnet-web \
    ${cargo_features:+--features $cargo_features}
  rm -rf "dist/wasm/$v"
  wasm-bindgen --target web --out-dir "dist/wasm/$v" \
    "target/wasm-$v/wasm32-unknown-unknown/release/bitnet_web.wasm"
  raw=$(stat -c %s "dist/wasm/$v/bitnet_web_bg.wasm")
  gz=$(gzip -9 -c "dist/wasm/$v/bitnet_web_bg.wasm" | wc -c)
  echo "{\"variant\":\"$v\",\"wasm_bytes\":$raw,\"gzip_bytes\":$gz}"
done < <(wasm_builds)
