// Internal interface of the routed few-token kernel (a sparse MLP's decode; tiled_gemm.h's
// routed_gemv): the GEMV of tiled_gemv_kernel.cuh where each grid row is one (token, expert) slot.
// Plain C++17: no device code here.
#pragma once

#include <cstdint>

#include "backend/cuda/moe_route.h"
#include "backend/cuda/tiled_gemm_kernels.h"

namespace marlin::cuda::tiled_detail {

// What the last block to finish a group of slot rows does with them (tiled_gemm.h's
// RoutedEpilogue, one launch fewer): nothing; silu(gate)·up of each slot row (the group is one
// slot); or each token's weighted sum of its top_k slot rows (the group is a token's slots).
enum RoutedEpilogueKind : int { kEpilogueNone = 0, kEpilogueSiluMul = 1, kEpilogueCombine = 2 };

// Grid row y multiplies activation row y / slot_div of gemv.a by the weights of expert
// expert_ids[y] (tiles at expert_tiles[that], its row scales right after its tiles_bytes of tiles)
// into row y of gemv.c; gemv.m = 1, gemv.tiles and gemv.row_scales unused. With route_logits the
// expert is the one the block's first warp routes slot y to (token y / slot_div's slot
// y % slot_div, slot_div = top_k + n_shared), and the blocks of grid column 0 write their token's
// ids and weights to routed_ids and routed_weights.
struct RoutedGemvParams {
  GemvParams gemv;
  const uint8_t* const* expert_tiles = nullptr;
  const int32_t* expert_ids = nullptr;
  long long tiles_bytes = 0;
  int slot_div = 1;
  int epilogue = kEpilogueNone;
  int* counters = nullptr;              // one per group, zero between launches (the last block resets it)
  __half* epilogue_out = nullptr;       // silu: slots × n/2; combine: slots/top_k × n
  const float* slot_weights = nullptr;  // combine: one per slot
  int top_k = 1;                        // combine: slots per token
  const float* route_logits = nullptr;  // routing in the prologue: fp32 logits, route.n_experts per token
  const float* route_bias = nullptr;    // its score bias, or none
  RouteParams route{};
  int32_t* routed_ids = nullptr;
  float* routed_weights = nullptr;
};

// The routed variants (one per weight format: 16 warps, one strip each, one token), and a launch
// of variant `config` on grid_x × slots blocks.
const GemvConfig* routed_gemv_configs(int* count);
cudaError_t launch_routed_gemv(int config, const RoutedGemvParams& params, int grid_x, int slots, cudaStream_t stream);

}  // namespace marlin::cuda::tiled_detail
