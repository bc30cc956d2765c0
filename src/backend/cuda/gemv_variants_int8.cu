// The compiled variants of the few-token weight-tile kernel for 8-bit tiles (int8 and fp8).
#include "backend/cuda/tiled_gemv_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// MARLIN_GEMV_SET(X, codec, depth, groups_per_tile, asymmetric)
#define MARLIN_INT8_VARIANTS(X)                \
  MARLIN_GEMV_SET(X, kCodecInt8, 4, 1, false) \
  MARLIN_GEMV_SET(X, kCodecFp8, 4, 1, false)  \
  MARLIN_GEMV_SET(X, kCodecInt8, 4, 2, false) \
  MARLIN_GEMV_SET(X, kCodecInt8, 4, 4, false)

MARLIN_DEFINE_GEMV_TABLE(gemv_variants_int8, MARLIN_INT8_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
