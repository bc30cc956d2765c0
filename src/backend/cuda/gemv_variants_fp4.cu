// The compiled variants of the few-token weight-tile kernel for fp4 tiles (see gemm_variants_fp4.cu).
#include "backend/cuda/tiled_gemv_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// MARLIN_GEMV_SET(X, codec, depth, groups_per_tile, asymmetric)
#define MARLIN_FP4_VARIANTS(X)                \
  MARLIN_GEMV_SET(X, kCodecFp4, 4, 1, false) \
  MARLIN_GEMV_SET(X, kCodecFp4, 4, 4, false) \
  MARLIN_GEMV_SET(X, kCodecFp4, 4, 8, false) \
  MARLIN_GEMV_SET(X, kCodecFp4, 4, 2, false)

MARLIN_DEFINE_GEMV_TABLE(gemv_variants_fp4, MARLIN_FP4_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
