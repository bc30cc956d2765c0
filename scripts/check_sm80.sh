#!/usr/bin/env bash
# Compiles every CUDA source of the backend for sm_80 (Ampere), which the build does not target by
# default: the kernels that need sm_90 (TMA, wgmma, programmatic dependent launch) must stay
# guarded so that an Ampere build still compiles (there, every weight runs as fp16 on cuBLAS).
#   scripts/check_sm80.sh [NVCC]          (CTest runs it when the CUDA backend is built)
# To build for Ampere too: cmake -DCMAKE_CUDA_ARCHITECTURES="80-real;90a-real;90-virtual" ...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nvcc=${1:-nvcc}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=0
for f in "$root"/src/backend/cuda/*.cu; do
  if ! "$nvcc" -std=c++17 -O1 -gencode=arch=compute_80,code=sm_80 -I"$root/src" -c "$f" -o "$out/$(basename "$f").o" \
      2> "$out/log"; then
    echo "FAIL: $(basename "$f") does not compile for sm_80:"
    head -5 "$out/log"
    failed=1
  fi
done
[ $failed -eq 0 ] && echo "every CUDA source compiles for sm_80"
exit $failed
