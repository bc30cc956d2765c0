// The compiled variants of the int4 GEMM kernel and their launcher.
#include "backend/cuda/int4_gemm_kernel.cuh"

namespace marlin::cuda::int4_detail {

// X(row_tiles, frags_n, frags_m, groups_per_tile, asymmetric, path)
#define MARLIN_INT4_GEMM_VARIANTS(X)    \
  X(2, 1, 1, 1, false, kPathMma)        \
  X(2, 2, 1, 1, false, kPathMma)        \
  X(4, 2, 1, 1, false, kPathMma)        \
  X(2, 1, 2, 1, false, kPathMma)        \
  X(2, 2, 2, 1, false, kPathMma)        \
  X(4, 2, 2, 1, false, kPathMma)        \
  X(2, 2, 4, 1, false, kPathMma)        \
  X(4, 2, 4, 1, false, kPathMma)        \
  X(2, 2, 8, 1, false, kPathMma)        \
  X(4, 2, 8, 1, false, kPathMma)        \
  X(2, 1, 4, 1, false, kPathWgmma)      \
  X(2, 1, 8, 1, false, kPathWgmma)      \
  X(2, 1, 16, 1, false, kPathWgmma)     \
  X(4, 1, 8, 1, false, kPathWgmma)      \
  X(2, 2, 2, 2, false, kPathMma)        \
  X(2, 2, 2, 4, false, kPathMma)        \
  X(2, 2, 2, 1, true, kPathMma)         \
  X(2, 2, 2, 4, true, kPathMma)         \
  X(2, 1, 8, 2, false, kPathWgmma)      \
  X(2, 1, 8, 4, false, kPathWgmma)      \
  X(2, 1, 8, 1, true, kPathWgmma)       \
  X(2, 1, 8, 4, true, kPathWgmma)       \
  X(2, 1, 1, 1, false, kPathStream)     \
  X(2, 1, 2, 1, false, kPathStream)     \
  X(4, 2, 1, 1, false, kPathStream)

namespace {

#define MARLIN_CONFIG_ROW(R, FN, FM, G, Z, PATH) KernelConfig{R, FN, FM, G, Z, PATH},
constexpr KernelConfig kConfigs[] = {MARLIN_INT4_GEMM_VARIANTS(MARLIN_CONFIG_ROW)};
#undef MARLIN_CONFIG_ROW

template <int R, int FN, int FM, int G, bool Z, int PATH>
cudaError_t launch_variant(const GemmParams& params, int grid, int smem, bool pdl, cudaStream_t stream) {
  auto* kernel = int4_gemm_kernel<R, FN, FM, G, Z, PATH>;
  // Raising the dynamic shared-memory limit is cheap; doing it on every launch keeps this
  // thread-safe and correct on every device.
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(Int4Gemm<R, FN, FM, G, Z, PATH>::kThreads);
  config.dynamicSmemBytes = size_t(smem);
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, params);
}

}  // namespace

int KernelConfig::stage_bytes() const { return row_tiles * tile_bytes() + chunk_tokens() * kActBytesPerToken; }

const KernelConfig* kernel_configs(int* count) {
  *count = int(sizeof(kConfigs) / sizeof(kConfigs[0]));
  return kConfigs;
}

cudaError_t launch_int4_gemm(int config, const GemmParams& params, int grid, int smem, bool pdl,
                             cudaStream_t stream) {
  int index = 0;
#define MARLIN_LAUNCH_CASE(R, FN, FM, G, Z, PATH) \
  if (config == index++) return launch_variant<R, FN, FM, G, Z, PATH>(params, grid, smem, pdl, stream);
  MARLIN_INT4_GEMM_VARIANTS(MARLIN_LAUNCH_CASE)
#undef MARLIN_LAUNCH_CASE
  return cudaErrorInvalidValue;
}

}  // namespace marlin::cuda::int4_detail
