// int4 tiles back to a plain fp16 matrix, for products with many rows: there cuBLAS on fp16
// weights beats the fused kernel by more than the unpacking costs (see cuda_linear.cpp).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backend/cuda/int4_gemm.h"

namespace marlin::cuda {

// out (n × k, row-major) = fp16(s·(q − z)) of every weight, rounded once from fp32, as
// dequantize_row computes it.
void int4_tiles_to_half(const Int4Weights& w, __half* out, cudaStream_t stream);

}  // namespace marlin::cuda
