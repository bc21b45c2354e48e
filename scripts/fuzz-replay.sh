#!/usr/bin/env bash
# Replays the committed fuzz corpora through the cargo-fuzz (libFuzzer) targets of fuzz/,
# so that no input that once passed (or once crashed, and was fixed) can regress:
#   1. every file of fuzz/corpus/<target>/ is run once, whole (for the GGUF targets also
#      the model fixtures of tests/fixtures/ under 4 MB, which seed them);
#   2. then a short, seeded libFuzzer run of a fixed number of executions on that corpus
#      (new inputs go to a temporary folder, never into the committed corpus).
# Builds with AddressSanitizer, debug assertions and overflow checks (cargo-fuzz's
# default). Any panic, abort, sanitizer report, allocation past 2 GiB or run past 10 s
# fails the script. Long campaigns: see docs/testing.md#fuzzing.
#
# Needs the dated nightly of scripts/toolchains.sh (FUZZ_TOOLCHAIN overrides it) and a
# C++ compiler (libFuzzer is built from source). FUZZ_RUNS scales the runs of step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchains.sh

CARGO_FUZZ_VERSION=0.13.2
toolchain="${FUZZ_TOOLCHAIN:-$NIGHTLY}"
scale="${FUZZ_RUNS:-1}"
# target, executions of step 2, -max_len of step 2 (what the campaigns used).
targets=(
  "gguf_reader 20000 24576"
  "template_tokenizer 2000 4096"
  "load_chat 1000 24576"
)
limits=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10)

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

echo "== fuzz: build the targets ($toolchain, cargo-fuzz $CARGO_FUZZ_VERSION, AddressSanitizer)"
cargo "+$toolchain" fuzz build

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Runs "$@" and shows the lines of its output that match $1's pattern, or all of its
# output when it fails.
show() {
  local pattern=$1
  shift
  if "$@" >"$work/log" 2>&1; then
    grep -E "$pattern" "$work/log" || true
  else
    cat "$work/log"
    echo "FAILED: $*" | cut -c1-300 >&2
    return 1
  fi
}
for spec in "${targets[@]}"; do
  read -r t runs max_len <<<"$spec"
  corpus="fuzz/corpus/$t"
  mapfile -d '' files < <(find "$corpus" -type f -print0 | sort -z)
  if [ "$t" != template_tokenizer ]; then
    mapfile -d '' -O "${#files[@]}" files < <(find tests/fixtures -name '*.gguf' -size -4096k -print0 | sort -z)
  fi
  echo "== fuzz: $t: the ${#files[@]} corpus files, whole"
  show 'NOTE: fuzzing was not performed' cargo "+$toolchain" fuzz run "$t" "${files[@]}" -- "${limits[@]}"
  echo "== fuzz: $t: $((runs * scale)) seeded executions from the corpus"
  mkdir -p "$work/$t"
  show '^#[0-9]+ +(INITED|DONE)|^stat::number_of_executed_units' \
    cargo "+$toolchain" fuzz run "$t" "$work/$t" "$corpus" -- "${limits[@]}" \
    -runs=$((runs * scale)) -max_len="$max_len" -seed=1 -print_final_stats=1
done
