// The compiled variants of the few-token weight-tile kernel for 8-bit tiles (int8 and fp8).
#include <iterator>

#include "backend/cuda/tiled_gemv_kernel.cuh"

namespace marlin::cuda::tiled_detail {

// X(codec, warps, strips_per_warp, frags_m, groups_per_tile, asymmetric)
#define MARLIN_GEMV_VARIANTS(X)     \
  X(kCodecInt8, 16, 1, 1, 1, false) \
  X(kCodecInt8, 8, 2, 1, 1, false)  \
  X(kCodecInt8, 8, 2, 2, 1, false)  \
  X(kCodecFp8, 16, 1, 1, 1, false)  \
  X(kCodecFp8, 8, 2, 1, 1, false)   \
  X(kCodecFp8, 8, 2, 2, 1, false)   \
  X(kCodecInt8, 16, 1, 1, 2, false) \
  X(kCodecInt8, 8, 2, 1, 2, false)  \
  X(kCodecInt8, 8, 2, 2, 2, false)  \
  X(kCodecInt8, 16, 1, 1, 4, false) \
  X(kCodecInt8, 8, 2, 1, 4, false)  \
  X(kCodecInt8, 8, 2, 2, 4, false)

namespace {

#define MARLIN_GEMV_ROW(CODEC, W, S, FM, G, Z) GemvConfig{CODEC, W, S, FM, G, Z},
constexpr GemvConfig kConfigs[] = {MARLIN_GEMV_VARIANTS(MARLIN_GEMV_ROW)};
#undef MARLIN_GEMV_ROW

cudaError_t launch(int index, const GemvParams& params, int grid, bool pdl, cudaStream_t stream) {
  int i = 0;
#define MARLIN_GEMV_CASE(CODEC, W, S, FM, G, Z) \
  if (index == i++) return launch_gemv_variant<CODEC, W, S, FM, G, Z>(params, grid, pdl, stream);
  MARLIN_GEMV_VARIANTS(MARLIN_GEMV_CASE)
#undef MARLIN_GEMV_CASE
  return cudaErrorInvalidValue;
}

}  // namespace

GemvVariantTable gemv_variants_int8() { return {kConfigs, int(std::size(kConfigs)), launch}; }

}  // namespace marlin::cuda::tiled_detail
