// The compiled variants of the striped weight-tile GEMM for 8-bit tiles (int8 and fp8).
#include "backend/cuda/tiled_gemm_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// X(codec, row_tiles, frags_n, frags_m, groups_per_tile, asymmetric, path)
#define MARLIN_INT8_VARIANTS(X)                 \
  MARLIN_GEMM_FULL_SET(X, kCodecInt8, 1, false) \
  MARLIN_GEMM_FULL_SET(X, kCodecFp8, 1, false)  \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt8, 2, false) \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt8, 4, false) \
  X(kCodecInt8, 2, 1, 1, 1, false, kPathStream) \
  X(kCodecInt8, 4, 2, 1, 1, false, kPathStream)

MARLIN_DEFINE_GEMM_TABLE(gemm_variants_int8, MARLIN_INT8_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
