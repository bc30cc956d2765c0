// The compiled variants of the few-token weight-tile kernel for int4 tiles.
#include "backend/cuda/tiled_gemv_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// X(codec, warps, strips_per_warp, frags_m, depth, groups_per_tile, asymmetric)
#define MARLIN_INT4_VARIANTS(X)        \
  X(kCodecInt4, 8, 2, 1, 4, 1, false)  \
  X(kCodecInt4, 8, 2, 2, 4, 1, false)  \
  X(kCodecInt4, 8, 1, 1, 4, 1, false)  \
  X(kCodecInt4, 8, 1, 2, 4, 1, false)  \
  X(kCodecInt4, 16, 1, 1, 4, 1, false) \
  X(kCodecInt4, 16, 1, 2, 4, 1, false) \
  X(kCodecInt4, 8, 2, 4, 4, 1, false)  \
  X(kCodecInt4, 8, 2, 1, 4, 2, false)  \
  X(kCodecInt4, 8, 2, 2, 4, 2, false)  \
  X(kCodecInt4, 8, 2, 1, 4, 4, false)  \
  X(kCodecInt4, 8, 2, 2, 4, 4, false)  \
  X(kCodecInt4, 8, 2, 1, 4, 1, true)   \
  X(kCodecInt4, 8, 2, 2, 4, 1, true)   \
  X(kCodecInt4, 8, 2, 1, 4, 2, true)   \
  X(kCodecInt4, 8, 2, 2, 4, 2, true)   \
  X(kCodecInt4, 8, 2, 1, 4, 4, true)   \
  X(kCodecInt4, 8, 2, 2, 4, 4, true)

MARLIN_DEFINE_GEMV_TABLE(gemv_variants_int4, MARLIN_INT4_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
