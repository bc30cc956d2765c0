// The one-launch decode step of a sparse MLP (moe_decode_kernel.cuh), one variant per routed
// variant (tiled_routed_gemv.h's MARLIN_ROUTED_VARIANTS, indexed the same way).
#include "backend/cuda/moe_decode_kernel.cuh"

namespace marlin::cuda::tiled_detail {

#define MARLIN_MOE_DECODE_LAUNCH_CASE(CODEC, W, S, FM, D, G, Z) \
  if (index == i++) return launch_moe_decode_variant<CODEC, W, S, FM, D, G, Z>(params, grid, smem, stream);
#define MARLIN_MOE_DECODE_LIMITS_CASE(CODEC, W, S, FM, D, G, Z) \
  if (index == i++) return moe_decode_variant_limits<CODEC, W, S, FM, D, G, Z>(max_smem, blocks_per_sm);

cudaError_t launch_moe_decode(int index, const MoeDecodeParams& params, int grid, size_t smem, cudaStream_t stream) {
  int i = 0;
  MARLIN_ROUTED_VARIANTS(MARLIN_MOE_DECODE_LAUNCH_CASE)
  return cudaErrorInvalidValue;
}

cudaError_t raise_moe_decode_smem(int index, int* max_smem, int* blocks_per_sm) {
  int i = 0;
  MARLIN_ROUTED_VARIANTS(MARLIN_MOE_DECODE_LIMITS_CASE)
  return cudaErrorInvalidValue;
}

}  // namespace marlin::cuda::tiled_detail
