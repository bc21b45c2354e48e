#!/usr/bin/env bash
# Installs the build tools a fresh machine lacks (shared by `npm start` and .ci/run):
# the wasm32 target, wasm-bindgen-cli pinned to the wasm-bindgen crate in Cargo.lock, and
# the nightly toolchain's std sources (the threads builds rebuild std with atomics).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchains.sh

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
# The test command checks formatting and lints.
components=$(rustup component list --installed)
for c in rustfmt clippy; do
  if ! grep -q "^$c-" <<<"$components"; then rustup component add "$c"; fi
done

# wasm-bindgen-cli must match the wasm-bindgen crate exactly: take the version from Cargo.lock.
wb=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb" ]; then
  # Not --locked: the crate's own lock file names a webpki-roots release the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$wb"
fi

# The `-threads` wasm builds need `-Z build-std` (nightly) and std's sources.
if ! rustup toolchain list | grep -q "^$NIGHTLY"; then
  rustup toolchain install "$NIGHTLY" --profile minimal
fi
if ! rustup component list --toolchain "$NIGHTLY" --installed | grep -qx 'rust-src'; then
  rustup component add rust-src --toolchain "$NIGHTLY"
fi
