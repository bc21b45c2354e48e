#!/usr/bin/env bash
# The GPU benchmark, sized for a short loan of a GPU machine: it builds nothing. It takes a
# release `bitnet` built elsewhere (carried along), synthesizes the 2B4T-shaped I2_S model
# where it runs, and prints one JSON line per LM head from `bitnet bench --backend gpu`:
# decode and prefill tokens/s, time per decoded token split into GPU time (timestamp
# queries, where the adapter has them) and the rest (submission, readback, the CPU's
# share), dispatches and submissions per token, the bytes a token reads, and the fraction
# of the card's copy bandwidth (measured in the same run) that decode streams. A CPU line
# of the same machine follows, with its read bandwidth.
#
#   scripts/bench-gpu.sh [BITNET]     BITNET defaults to target/release/bitnet
#   SHAPE=tiny scripts/bench-gpu.sh   a small model, to try the script on lavapipe
#
# The Vulkan loader: a machine without one (`ldconfig -p | grep libvulkan` prints nothing)
# gets it from the .debs in .gl/ when they were carried along (docs/webgpu.md says how to
# fetch them); NVIDIA's driver files are named when they are where the loaner puts them.
set -euo pipefail
cd "$(dirname "$0")/.."
bitnet=${1:-target/release/bitnet}
shape=${SHAPE:-2b4t}
if ! ldconfig -p | grep -q libvulkan && compgen -G ".gl/*.deb" > /dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
  export VK_DRIVER_FILES=$nvidia_icd
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
dir=${BENCH_DIR:-/tmp/bitnet-bench}
mkdir -p "$dir"
model="$dir/$shape-I2_S.gguf"
[ -f "$model" ] || "$bitnet" synth --shape "$shape" --wtype I2_S --seed 1 --out "$model" > /dev/null
runs=${RUNS:-3}
for head in file int8; do
  "$bitnet" bench --backend gpu --model "$model" --head "$head" --prompt-tokens 64 --gen-tokens 64 --runs "$runs"
done
"$bitnet" bench --backend cpu --model "$model" --head int8 --prompt-tokens 64 --gen-tokens 64 --runs 1 --threads "$(nproc)"
