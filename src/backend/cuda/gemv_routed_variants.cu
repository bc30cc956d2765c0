// The routed few-token kernel (a sparse MLP's decode: each grid row one (token, expert) slot), one
// variant per weight format that mixture-of-experts checkpoints use: int4 (g128/g64/g32, with or
// without zero points), int8 and fp8, fp4 / mxfp4 / nvfp4. int3 and int2 experts take the host path
// (cuda_experts.h). They run the deep rounds (tiled_gemv_kernel.cuh), 128 bytes per lane deep
// (8 half-k-tiles of 4-bit codes, 4 of 8-bit ones; 6 where int4-g32 zero points or fp4-g16 scales
// would not fit in 128 registers).
#include "backend/cuda/tiled_routed_gemv.cuh"

namespace marlin::cuda::tiled_detail {

MARLIN_DEFINE_ROUTED_GEMV_TABLE(MARLIN_ROUTED_VARIANTS)

}  // namespace marlin::cuda::tiled_detail
