// Fused 8-bit-dequantize × fp16 GEMM on Hopper (sm_90): C = A · Wᵀ with W in 8-bit tiles
// (backend/int8_tiles.h): int8 symmetric (g32 / g64 / g128 / per channel, w = s·(q − 128)) or
// FP8 E4M3 (per channel or g128, w = s·e4m3(q)), fp16 scales. The weights stream at 8 bits per
// value (plus the scales), twice int4's bytes: for few tokens the floor is about half of cuBLAS
// FP16's time. Shapes, limits, workspace and determinism: tiled_gemm.h.
#pragma once

#include "backend/cuda/tiled_gemm.h"

namespace marlin::cuda {

// 8-bit tiles on the current device, packed from a planar int8 or fp8 tensor (pack_int8_tiles()).
class Int8DeviceWeights : public DeviceWeightTiles {
 public:
  explicit Int8DeviceWeights(const QuantTensor& planar);
};

// C = A · Wᵀ for m tokens on `stream`; W must hold int8 or fp8 tiles (else marlin::Error).
void int8_gemm(const TiledWeights& w, const __half* a, __half* c, int64_t m, GemmWorkspace& workspace,
               cudaStream_t stream, const GemmTuning& tuning = {});

}  // namespace marlin::cuda
