// The grouped weight-tile GEMM's variants (a sparse MLP's prompt steps), one per weight format of
// the routed decode kernel (gemv_routed_variants.cu): int4 (g128/g64/g32, with or without zero
// points), int8 and fp8, fp4 / mxfp4 / nvfp4. Other formats take the host-routed path
// (cuda_experts.h).
#include "backend/cuda/tiled_grouped_gemm.cuh"

namespace marlin::cuda::tiled_detail {

// X(codec, groups_per_tile, asymmetric, chunk): each format with narrow (mma.sync) and wide
// (wgmma) chunks.
#define MARLIN_GROUPED_FORMATS(X, CHUNK) \
  X(kCodecInt4, 1, false, CHUNK)         \
  X(kCodecInt4, 2, false, CHUNK)         \
  X(kCodecInt4, 4, false, CHUNK)         \
  X(kCodecInt4, 1, true, CHUNK)          \
  X(kCodecInt4, 2, true, CHUNK)          \
  X(kCodecInt4, 4, true, CHUNK)          \
  X(kCodecInt8, 1, false, CHUNK)         \
  X(kCodecInt8, 2, false, CHUNK)         \
  X(kCodecInt8, 4, false, CHUNK)         \
  X(kCodecFp8, 1, false, CHUNK)          \
  X(kCodecFp4, 1, false, CHUNK)          \
  X(kCodecFp4, 2, false, CHUNK)          \
  X(kCodecFp4, 4, false, CHUNK)          \
  X(kCodecFp4, 8, false, CHUNK)
#define MARLIN_GROUPED_VARIANTS(X)                    \
  MARLIN_GROUPED_FORMATS(X, kGroupedChunkNarrow) \
  MARLIN_GROUPED_FORMATS(X, kGroupedChunkWide)

MARLIN_DEFINE_GROUPED_GEMM_TABLE(MARLIN_GROUPED_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
