// The compiled variants of the striped weight-tile GEMM for fp4 tiles: fp4-g128 / per channel
// (1 group per tile), fp4-g32 and mxfp4 (4), nvfp4 (8), fp4-g64 (2).
#include "backend/cuda/tiled_gemm_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// MARLIN_GEMM_*_SET(X, codec, groups_per_tile, asymmetric)
#define MARLIN_FP4_VARIANTS(X)                 \
  MARLIN_GEMM_FULL_SET(X, kCodecFp4, 1, false) \
  MARLIN_GEMM_FULL_SET(X, kCodecFp4, 4, false) \
  MARLIN_GEMM_FULL_SET(X, kCodecFp4, 8, false) \
  MARLIN_GEMM_BASIC_SET(X, kCodecFp4, 2, false)

MARLIN_DEFINE_GEMM_TABLE(gemm_variants_fp4, MARLIN_FP4_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
