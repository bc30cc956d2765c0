// The compiled variants of the striped weight-tile GEMM for int3 tiles: g128 / per channel with
// every kernel the pick uses but the 256-row wgmma (it spills registers), g64 and g32 with its
// fallbacks; symmetric and asymmetric.
#include "backend/cuda/tiled_gemm_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// MARLIN_GEMM_*(X, codec, groups_per_tile, asymmetric)
#define MARLIN_INT3_VARIANTS(X)                  \
  MARLIN_GEMM_SET_R2_WGMMA(X, kCodecInt3, 1, false)  \
  MARLIN_GEMM_SET_R2_WGMMA(X, kCodecInt3, 1, true)   \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt3, 2, false) \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt3, 2, true)  \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt3, 4, false) \
  MARLIN_GEMM_BASIC_SET(X, kCodecInt3, 4, true)

MARLIN_DEFINE_GEMM_TABLE(gemm_variants_int3, MARLIN_INT3_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
