#!/usr/bin/env bash
# Builds the weight-tile GEMM scratchpad (bench/gpu/tiled_gemm.cu) with the library's tile packing
# and kernels as one standalone program for Hopper (sm_90a only, to halve the compile time; the
# library itself also embeds compute_90 PTX):
#   bench/gpu/build.sh [OUT_DIR]      (default: build-gpu/)
# Host files go through g++ with fmt header-only (so the binary needs only libcudart/libcublas
# from the CUDA toolkit at run time); -Xptxas -v prints registers and spills of every kernel.
# JOBS (default 2) compiles that many files at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build-gpu}
jobs=${JOBS:-2}
mkdir -p "$out/obj"
arch="-gencode=arch=compute_90a,code=sm_90a"
host_flags="-std=c++20 -O2 -Wall -Wextra -Wno-unused-parameter -DFMT_HEADER_ONLY -I$root/src -I/usr/local/cuda/include"
host_files="backend/weight_tiles.cpp backend/int4_tiles.cpp backend/int8_tiles.cpp backend/fp4_tiles.cpp
  backend/lowbit_tiles.cpp quant/format.cpp quant/ggml_types.cpp
  quant/dequant.cpp quant/pack.cpp quant/ggml_dequant.cpp backend/cuda/tiled_gemm.cpp backend/cuda/tiled_gemm_pick.cpp
  backend/cuda/tiled_gemm_variants.cpp backend/cuda/int4_gemm.cpp backend/cuda/int8_gemm.cpp"
kernel_files="gemm_variants_int4 gemm_variants_int8 gemm_variants_fp4 gemm_variants_int2 gemm_variants_int3
  gemv_variants_int4 gemv_variants_int8 gemv_variants_fp4 gemv_variants_int2 gemv_variants_int3"
{
  for f in $kernel_files; do
    echo "nvcc -std=c++17 -O3 -lineinfo $arch -Xptxas -v -I$root/src -c $root/src/backend/cuda/$f.cu -o $out/obj/$f.o 2> $out/ptxas_$f.log"
  done
  for f in $host_files; do
    echo "g++ $host_flags -c $root/src/$f -o $out/obj/$(basename "$f" .cpp).o"
  done
  echo "nvcc -std=c++20 -O3 -lineinfo $arch -DFMT_HEADER_ONLY -I$root/src -c $root/bench/gpu/tiled_gemm.cu -o $out/obj/tiled_gemm_bench.o"
} | xargs -P "$jobs" -I{} bash -c '{}'
nvcc $arch "$out"/obj/*.o -lcublas -o "$out/tiled_gemm"
spilling=$(cat "$out"/ptxas_*.log | grep -E "spill stores" | grep -vc " 0 bytes spill stores, 0 bytes spill loads" || true)
if [ "$spilling" -gt 0 ]; then
  echo "warning: $spilling kernels spill registers (see $out/ptxas_*.log)"
fi
echo "built $out/tiled_gemm"
