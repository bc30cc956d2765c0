// Fused int4-dequantize × fp16 GEMM on Hopper (sm_90): C = A · Wᵀ with W in int4 tiles
// (backend/int4_tiles.h: symmetric or asymmetric, g32 / g64 / g128 / per channel, fp16 scales).
// Shapes, limits, workspace and determinism: tiled_gemm.h.
#pragma once

#include "backend/cuda/tiled_gemm.h"

namespace marlin::cuda {

// Int4 tiles on the current device, packed from a planar int4 tensor (pack_int4_tiles()).
class Int4DeviceWeights : public DeviceWeightTiles {
 public:
  explicit Int4DeviceWeights(const QuantTensor& planar);
};

// C = A · Wᵀ for m tokens on `stream`; W must hold int4 tiles (else marlin::Error).
void int4_gemm(const TiledWeights& w, const __half* a, __half* c, int64_t m, GemmWorkspace& workspace,
               cudaStream_t stream, const GemmTuning& tuning = {});

}  // namespace marlin::cuda
