#!/usr/bin/env bash
# The GPU half of the tests, for a machine with an NVIDIA GPU (CI has none and runs the CPU half):
#   1. the CUDA conformance harness: every CUDA op and whole models against the CPU (test_cuda);
#   2. `marlin run --device cuda` on the default model: the first 32 greedy tokens equal the CPU's.
#   scripts/test_gpu.sh [BUILD_DIR]      (default: build/)
# Shared libraries the GPU machine may lack can be put in BUILD_DIR/lib.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
[ -d "$build/lib" ] && export LD_LIBRARY_PATH="$build/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

echo "== CUDA conformance harness"
(cd "$root" && "$build/tests/test_cuda" --gtest_brief=1)

echo "== marlin run --device cuda against the CPU (32 greedy tokens)"
prompt="Write one sentence about the sea."
cpu=$("$build/marlin" run --device cpu --temperature 0 --max-tokens 32 "$prompt")
gpu=$("$build/marlin" run --device cuda --temperature 0 --max-tokens 32 "$prompt")
printf 'cpu: %s\ngpu: %s\n' "$cpu" "$gpu"
if [ "$cpu" != "$gpu" ]; then
  echo "FAIL: the GPU's answer differs from the CPU's"
  exit 1
fi
echo "OK"
