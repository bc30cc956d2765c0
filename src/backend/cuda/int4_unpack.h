// int4 weight tiles back to a plain fp16 matrix, for products with many rows: there cuBLAS on fp16
// weights beats the fused kernel by more than the unpacking costs (see cuda_linear.cpp). Plain
// parameters (no C++20 headers), as the kernel is compiled as CUDA C++17.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace marlin::cuda {

// out (rows × cols, row-major) = fp16(s·(q − z)) of every weight, rounded once from fp32 as
// dequantize_row computes it, from int4 tiles (backend/int4_tiles.h) of that shape. Returns the
// launch's error.
cudaError_t int4_tiles_to_half(const uint8_t* tiles, int64_t rows, int64_t cols, int groups_per_tile, bool asymmetric,
                               __half* out, cudaStream_t stream);

}  // namespace marlin::cuda
