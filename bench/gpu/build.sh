#!/usr/bin/env bash
# Builds the int4 GEMM scratchpad (bench/gpu/int4_gemm.cu) as one standalone program for Hopper:
#   bench/gpu/build.sh [OUT_DIR]      (default: build-gpu/)
# Host files go through g++ with fmt header-only (so the binary needs only libcudart/libcublas
# from the CUDA toolkit at run time); -Xptxas -v prints registers and spills of every kernel.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build-gpu}
mkdir -p "$out/obj"
arch="-gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=sm_90"
host_flags="-std=c++20 -O2 -Wall -Wextra -Wno-unused-parameter -DFMT_HEADER_ONLY -I$root/src"
for f in backend/int4_tiles.cpp quant/format.cpp quant/ggml_types.cpp backend/cuda/int4_gemm.cpp; do
  g++ $host_flags -I/usr/local/cuda/include -c "$root/src/$f" -o "$out/obj/$(basename "$f" .cpp).o" &
done
for f in int4_gemm_kernels int4_gemv_kernels; do
  nvcc -std=c++17 -O3 -lineinfo $arch -Xptxas -v -I"$root/src" -c "$root/src/backend/cuda/$f.cu" \
    -o "$out/obj/$f.o" 2> "$out/ptxas_$f.log" &
done
wait
nvcc -std=c++20 -O3 -lineinfo $arch -DFMT_HEADER_ONLY -I"$root/src" -c "$root/bench/gpu/int4_gemm.cu" \
  -o "$out/obj/int4_gemm_bench.o"
nvcc $arch "$out"/obj/*.o -lcublas -o "$out/int4_gemm"
if cat "$out"/ptxas_*.log | grep -E "spill (stores|loads)" | grep -vq " 0 bytes spill stores, 0 bytes spill loads"; then
  echo "warning: register spills (see $out/ptxas_*.log)"
fi
echo "built $out/int4_gemm"
