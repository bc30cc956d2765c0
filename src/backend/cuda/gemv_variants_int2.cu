// The compiled variants of the few-token weight-tile kernel for int2 tiles. A lane reads 8 bytes
// per half-k-tile (int4: 16), so the lighter formats load 6 half-k-tiles ahead (int4: 4; 8 spills
// registers) to keep more bytes in flight; those with more scale and zero-point registers per
// step 4 to 6.
#include "backend/cuda/tiled_gemv_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// MARLIN_GEMV_SET(X, codec, depth, groups_per_tile, asymmetric)
#define MARLIN_INT2_VARIANTS(X)                \
  MARLIN_GEMV_SET(X, kCodecInt2, 6, 1, false) \
  MARLIN_GEMV_SET(X, kCodecInt2, 6, 1, true)  \
  MARLIN_GEMV_SET(X, kCodecInt2, 6, 2, false) \
  MARLIN_GEMV_SET(X, kCodecInt2, 4, 2, true)  \
  MARLIN_GEMV_SET(X, kCodecInt2, 4, 4, false) \
  MARLIN_GEMV_SET(X, kCodecInt2, 4, 4, true)

MARLIN_DEFINE_GEMV_TABLE(gemv_variants_int2, MARLIN_INT2_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
