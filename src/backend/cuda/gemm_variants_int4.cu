// The compiled variants of the striped weight-tile GEMM for int4 tiles.
#include "backend/cuda/tiled_gemm_kernel.cuh"
#include "backend/cuda/tiled_variant_table.cuh"

namespace marlin::cuda::tiled_detail {

// X(codec, row_tiles, frags_n, frags_m, groups_per_tile, asymmetric, path)
#define MARLIN_INT4_VARIANTS(X)                   \
  X(kCodecInt4, 2, 1, 1, 1, false, kPathMma)      \
  X(kCodecInt4, 2, 2, 1, 1, false, kPathMma)      \
  X(kCodecInt4, 4, 2, 1, 1, false, kPathMma)      \
  X(kCodecInt4, 2, 1, 2, 1, false, kPathMma)      \
  X(kCodecInt4, 2, 2, 2, 1, false, kPathMma)      \
  X(kCodecInt4, 4, 2, 2, 1, false, kPathMma)      \
  X(kCodecInt4, 2, 2, 4, 1, false, kPathMma)      \
  X(kCodecInt4, 4, 2, 4, 1, false, kPathMma)      \
  X(kCodecInt4, 2, 2, 8, 1, false, kPathMma)      \
  X(kCodecInt4, 4, 2, 8, 1, false, kPathMma)      \
  X(kCodecInt4, 2, 1, 4, 1, false, kPathWgmma)    \
  X(kCodecInt4, 2, 1, 8, 1, false, kPathWgmma)    \
  X(kCodecInt4, 2, 1, 16, 1, false, kPathWgmma)   \
  X(kCodecInt4, 4, 1, 8, 1, false, kPathWgmma)    \
  X(kCodecInt4, 2, 2, 2, 2, false, kPathMma)      \
  X(kCodecInt4, 2, 2, 2, 4, false, kPathMma)      \
  X(kCodecInt4, 2, 2, 2, 1, true, kPathMma)       \
  X(kCodecInt4, 2, 2, 2, 2, true, kPathMma)       \
  X(kCodecInt4, 2, 2, 2, 4, true, kPathMma)       \
  X(kCodecInt4, 2, 1, 8, 2, false, kPathWgmma)    \
  X(kCodecInt4, 2, 1, 8, 4, false, kPathWgmma)    \
  X(kCodecInt4, 2, 1, 8, 1, true, kPathWgmma)     \
  X(kCodecInt4, 2, 1, 8, 2, true, kPathWgmma)     \
  X(kCodecInt4, 2, 1, 8, 4, true, kPathWgmma)     \
  X(kCodecInt4, 2, 1, 1, 1, false, kPathStream)   \
  X(kCodecInt4, 2, 1, 2, 1, false, kPathStream)   \
  X(kCodecInt4, 4, 2, 1, 1, false, kPathStream)

MARLIN_DEFINE_GEMM_TABLE(gemm_variants_int4, MARLIN_INT4_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
