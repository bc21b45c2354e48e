#!/usr/bin/env bash
# Terminal chat on the bundled test model (random weights: a pipeline check that
# produces nonsense text). Pass a real model as the first argument, e.g. the
# official BitNet b1.58 2B4T file (ggml-model-i2_s.gguf).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-tests/fixtures/tiny-b158-I2_S.gguf}"
shift || true
exec cargo run --release --locked -q -p bitnet-cli -- chat --model "$model" "$@"
