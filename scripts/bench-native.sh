#!/usr/bin/env bash
# Native decode/prefill speed on synthetic 2B4T-shaped models (I2_S and TQ2_0, ~1.2 GB each),
# side by side with the llama.cpp / bitnet.cpp anchors measured on this machine kind
# (../shared/docs/infra.md). Prints one JSON line per run, then the ratios. The machine is
# shared: each run also measures plain read bandwidth, the ceiling for memory-bound decode.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-1}"
dir="${BENCH_DIR:-target/bench-models}"
mkdir -p "$dir"
cargo build --release --locked -q -p bitnet-cli
bin=target/release/bitnet
for w in I2_S TQ2_0; do
  [ -f "$dir/2b4t-$w.gguf" ] || "$bin" synth --shape 2b4t --wtype "$w" --seed 1 --out "$dir/2b4t-$w.gguf"
done
for w in I2_S TQ2_0; do
  "$bin" bench --model "$dir/2b4t-$w.gguf" --prompt-tokens 64 --gen-tokens 64 --runs "${RUNS:-3}" --threads "$threads" | tee "$dir/result-$w-$threads.json"
done
python3 - "$dir" "$threads" <<'PY'
import json, sys
d, threads = sys.argv[1], int(sys.argv[2])
# (prefill, decode) tokens/s: bitnet.cpp on I2_S, llama.cpp on TQ2_0, per thread count.
anchors = {("I2_S", 1): ("bitnet.cpp", 30.1, 16.8), ("I2_S", 2): ("bitnet.cpp", 52.1, 23.1),
           ("TQ2_0", 1): ("llama.cpp", 25.5, 14.6), ("TQ2_0", 2): ("llama.cpp", 49.9, 19.9)}
for w in ("I2_S", "TQ2_0"):
    r = json.load(open(f"{d}/result-{w}-{threads}.json"))
    if (w, threads) in anchors:
        name, p, dec = anchors[(w, threads)]
        print(f"{w} {threads} thread(s): decode {r['decode_tps']:.1f} tok/s = {r['decode_tps']/dec:.2f}x {name} ({dec}); "
              f"prefill {r['prefill_tps']:.1f} tok/s = {r['prefill_tps']/p:.2f}x {name} ({p}); peak RSS {r['peak_rss_bytes']/2**30:.2f} GiB; "
              f"decode streams {r['decode_GBps']:.1f} GB/s = {r['decode_GBps']/r['read_bandwidth_GBps']:.0%} of the {r['read_bandwidth_GBps']:.1f} GB/s a plain read loop got in the same run")
PY
