// The compiled variants of the few-token int4 kernel and their launcher.
#include "backend/cuda/int4_gemv_kernel.cuh"

namespace marlin::cuda::int4_detail {

// X(warps, strips_per_warp, frags_m, groups_per_tile, asymmetric)
#define MARLIN_INT4_GEMV_VARIANTS(X) \
  X(8, 2, 1, 1, false)               \
  X(8, 2, 2, 1, false)               \
  X(8, 1, 1, 1, false)               \
  X(8, 1, 2, 1, false)               \
  X(16, 1, 1, 1, false)              \
  X(16, 1, 2, 1, false)              \
  X(8, 2, 4, 1, false)               \
  X(8, 2, 1, 2, false)               \
  X(8, 2, 2, 2, false)               \
  X(8, 2, 1, 4, false)               \
  X(8, 2, 2, 4, false)               \
  X(8, 2, 1, 1, true)                \
  X(8, 2, 2, 1, true)                \
  X(8, 2, 1, 4, true)                \
  X(8, 2, 2, 4, true)

namespace {

#define MARLIN_GEMV_ROW(W, S, FM, G, Z) GemvConfig{W, S, FM, G, Z},
constexpr GemvConfig kGemvConfigs[] = {MARLIN_INT4_GEMV_VARIANTS(MARLIN_GEMV_ROW)};
#undef MARLIN_GEMV_ROW

template <int W, int S, int FM, int G, bool Z>
cudaError_t launch_gemv_variant(const GemvParams& params, int grid, bool pdl, cudaStream_t stream) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(W * 32);
  config.dynamicSmemBytes = size_t(W * 32 * S * FM * 16);
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, int4_gemv_kernel<W, S, FM, G, Z>, params);
}

}  // namespace

const GemvConfig* gemv_configs(int* count) {
  *count = int(sizeof(kGemvConfigs) / sizeof(kGemvConfigs[0]));
  return kGemvConfigs;
}

cudaError_t launch_int4_gemv(int config, const GemvParams& params, int grid, bool pdl, cudaStream_t stream) {
  int index = 0;
#define MARLIN_GEMV_CASE(W, S, FM, G, Z) \
  if (config == index++) return launch_gemv_variant<W, S, FM, G, Z>(params, grid, pdl, stream);
  MARLIN_INT4_GEMV_VARIANTS(MARLIN_GEMV_CASE)
#undef MARLIN_GEMV_CASE
  return cudaErrorInvalidValue;
}

}  // namespace marlin::cuda::int4_detail
