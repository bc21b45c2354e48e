#!/usr/bin/env bash
# Every test of the project. Run from anywhere; installs nothing (see .ci/run for that).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== native: engine + CLI (unit, property, fixture parity, malformed GGUF, sessions, CLI)"
cargo test --workspace --locked

echo "== the engine builds for wasm32 without threads"
cargo check --locked --target wasm32-unknown-unknown -p bitnet-engine --no-default-features
