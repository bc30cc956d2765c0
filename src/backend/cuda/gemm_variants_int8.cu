// The compiled variants of the striped weight-tile GEMM for 8-bit tiles (int8 and fp8).
#include <iterator>

#include "backend/cuda/tiled_gemm_kernel.cuh"

namespace marlin::cuda::tiled_detail {

// X(codec, row_tiles, frags_n, frags_m, groups_per_tile, asymmetric, path)
#define MARLIN_GEMM_VARIANTS(X)                 \
  X(kCodecInt8, 2, 2, 1, 1, false, kPathMma)    \
  X(kCodecInt8, 4, 2, 1, 1, false, kPathMma)    \
  X(kCodecInt8, 2, 2, 2, 1, false, kPathMma)    \
  X(kCodecInt8, 4, 2, 2, 1, false, kPathMma)    \
  X(kCodecInt8, 4, 2, 4, 1, false, kPathMma)    \
  X(kCodecInt8, 2, 1, 4, 1, false, kPathWgmma)  \
  X(kCodecInt8, 2, 1, 8, 1, false, kPathWgmma)  \
  X(kCodecInt8, 4, 1, 8, 1, false, kPathWgmma)  \
  X(kCodecFp8, 2, 2, 1, 1, false, kPathMma)     \
  X(kCodecFp8, 4, 2, 1, 1, false, kPathMma)     \
  X(kCodecFp8, 2, 2, 2, 1, false, kPathMma)     \
  X(kCodecFp8, 4, 2, 2, 1, false, kPathMma)     \
  X(kCodecFp8, 4, 2, 4, 1, false, kPathMma)     \
  X(kCodecFp8, 2, 1, 4, 1, false, kPathWgmma)   \
  X(kCodecFp8, 2, 1, 8, 1, false, kPathWgmma)   \
  X(kCodecFp8, 4, 1, 8, 1, false, kPathWgmma)   \
  X(kCodecInt8, 2, 2, 1, 2, false, kPathMma)    \
  X(kCodecInt8, 2, 2, 2, 2, false, kPathMma)    \
  X(kCodecInt8, 2, 1, 8, 2, false, kPathWgmma)  \
  X(kCodecInt8, 2, 2, 1, 4, false, kPathMma)    \
  X(kCodecInt8, 2, 2, 2, 4, false, kPathMma)    \
  X(kCodecInt8, 2, 1, 8, 4, false, kPathWgmma)  \
  X(kCodecInt8, 2, 1, 1, 1, false, kPathStream) \
  X(kCodecInt8, 4, 2, 1, 1, false, kPathStream)

namespace {

#define MARLIN_CONFIG_ROW(CODEC, R, FN, FM, G, Z, PATH) KernelConfig{CODEC, R, FN, FM, G, Z, PATH},
constexpr KernelConfig kConfigs[] = {MARLIN_GEMM_VARIANTS(MARLIN_CONFIG_ROW)};
#undef MARLIN_CONFIG_ROW

cudaError_t launch(int index, const GemmParams& params, int grid, int smem, bool pdl, cudaStream_t stream) {
  int i = 0;
#define MARLIN_LAUNCH_CASE(CODEC, R, FN, FM, G, Z, PATH) \
  if (index == i++) return launch_gemm_variant<CODEC, R, FN, FM, G, Z, PATH>(params, grid, smem, pdl, stream);
  MARLIN_GEMM_VARIANTS(MARLIN_LAUNCH_CASE)
#undef MARLIN_LAUNCH_CASE
  return cudaErrorInvalidValue;
}

}  // namespace

GemmVariantTable gemm_variants_int8() { return {kConfigs, int(std::size(kConfigs)), launch}; }

}  // namespace marlin::cuda::tiled_detail
