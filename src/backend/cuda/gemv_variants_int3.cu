// The compiled variants of the few-token weight-tile kernel for int3 tiles. A lane reads 12 bytes
// per half-k-tile (int4: 16): the lightest formats load 6 half-k-tiles ahead (int4: 4).
#include "backend/cuda/tiled_gemv_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// MARLIN_GEMV_SET(X, codec, depth, groups_per_tile, asymmetric)
#define MARLIN_INT3_VARIANTS(X)                \
  MARLIN_GEMV_SET(X, kCodecInt3, 6, 1, false) \
  MARLIN_GEMV_SET(X, kCodecInt3, 4, 1, true)  \
  MARLIN_GEMV_SET(X, kCodecInt3, 4, 2, false) \
  MARLIN_GEMV_SET(X, kCodecInt3, 4, 2, true)  \
  MARLIN_GEMV_SET(X, kCodecInt3, 4, 4, false) \
  MARLIN_GEMV_SET(X, kCodecInt3, 4, 4, true)

MARLIN_DEFINE_GEMV_TABLE(gemv_variants_int3, MARLIN_INT3_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
