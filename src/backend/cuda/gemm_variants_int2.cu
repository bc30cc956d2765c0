// The compiled variants of the striped weight-tile GEMM for int2 tiles: g128 / per channel and
// g64 with every kernel the pick uses but the 256-row wgmma (it spills registers), g32 with its
// fallbacks; symmetric and asymmetric.
#include "backend/cuda/tiled_gemm_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// MARLIN_GEMM_*(X, codec, groups_per_tile, asymmetric)
#define MARLIN_INT2_VARIANTS(X)                  \
  MARLIN_GEMM_SET_R2_WGMMA(X, kCodecInt2, 1, false)  \
  MARLIN_GEMM_SET_R2_WGMMA(X, kCodecInt2, 1, true)   \
  MARLIN_GEMM_SET_R2_WGMMA(X, kCodecInt2, 2, false)  \
  MARLIN_GEMM_SET_R2_WGMMA(X, kCodecInt2, 2, true)   \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt2, 4, false) \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt2, 4, true)

MARLIN_DEFINE_GEMM_TABLE(gemm_variants_int2, MARLIN_INT2_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
