// Internal interface of the routed few-token kernel (a sparse MLP's decode; tiled_gemm.h's
// routed_gemv): the GEMV of tiled_gemv_kernel.cuh where each grid row is one (token, expert) slot.
// Plain C++17: no device code here.
#pragma once

#include <cstdint>

#include "backend/cuda/moe_route.h"
#include "backend/cuda/tiled_gemm_kernels.h"

namespace marlin {
struct WeightTileShape;  // backend/weight_tiles.h (host code only)
}

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

// The routed variants, one per weight format that mixture-of-experts checkpoints use (see
// gemv_routed_variants.cu), as an X-macro list of X(codec, warps, strips_per_warp, frags_m,
// depth, groups_per_tile, asymmetric); the one-launch decode step has the same variants.
#define MARLIN_ROUTED_VARIANTS(X)      \
  X(kCodecInt4, 16, 1, 1, 8, 1, false) \
  X(kCodecInt4, 16, 1, 1, 8, 2, false) \
  X(kCodecInt4, 16, 1, 1, 8, 4, false) \
  X(kCodecInt4, 16, 1, 1, 8, 1, true)  \
  X(kCodecInt4, 16, 1, 1, 8, 2, true)  \
  X(kCodecInt4, 16, 1, 1, 6, 4, true)  \
  X(kCodecInt8, 16, 1, 1, 4, 1, false) \
  X(kCodecInt8, 16, 1, 1, 4, 2, false) \
  X(kCodecInt8, 16, 1, 1, 4, 4, false) \
  X(kCodecFp8, 16, 1, 1, 4, 1, false)  \
  X(kCodecFp4, 16, 1, 1, 8, 1, false)  \
  X(kCodecFp4, 16, 1, 1, 8, 2, false)  \
  X(kCodecFp4, 16, 1, 1, 8, 4, false)  \
  X(kCodecFp4, 16, 1, 1, 6, 8, false)

// The routed variants (one per weight format: 16 warps, one strip each, one token), and a launch
// of variant `config` on grid_x × slots blocks.
const GemvConfig* routed_gemv_configs(int* count);
// The routed variant for `shape`'s format (an index into routed_gemv_configs), or -1 (host code).
int routed_variant(const WeightTileShape& shape);
cudaError_t launch_routed_gemv(int config, const RoutedGemvParams& params, int grid_x, int slots, cudaStream_t stream);

// A sparse MLP's decode step in one launch (moe_decode_kernel.cuh): `rows` tokens of h (rows ×
// d_model), each routed by its logits to slot_div slots (top_k routed, then the shared experts);
// slot s has blocks_per_slot blocks (grid slots × blocks_per_slot, all resident at once). Expert
// e's stacked gate|up (2·d_ffn × d_model) and down (d_model × d_ffn) tiles are at
// gate_up_tiles[e] and down_tiles[e], row scales after their tiles_bytes. hidden (slots × d_ffn)
// and y (slots × d_model) hold the slots' SwiGLU and down outputs; out (rows × d_model) gets the
// sums. counters: slots + rows·blocks_per_slot + 1, zero before the first launch and after each.
constexpr int kMaxExperts = 256;
struct MoeDecodeParams {
  const uint8_t* const* gate_up_tiles = nullptr;
  const uint8_t* const* down_tiles = nullptr;
  long long gate_up_tiles_bytes = 0, down_tiles_bytes = 0;
  int gate_up_k_tiles = 0, down_k_tiles = 0;
  int d_model = 0, d_ffn = 0;
  const __half* h = nullptr;
  __half* out = nullptr;
  __half* hidden = nullptr;
  __half* y = nullptr;
  int* counters = nullptr;
  // Where the block's weights are staged in dynamic shared memory (bytes from its start), or 0
  // where they stream from global memory.
  int staged_offset = 0;
  int n_experts = 0;  // routed and shared, at most kMaxExperts
  int rows = 0, slots = 0, slot_div = 1, blocks_per_slot = 1;
  const float* route_logits = nullptr;
  const float* route_bias = nullptr;
  RouteParams route{};
};

// Launches variant `config` (an index into routed_gemv_configs) of the one-launch decode step on
// `grid` blocks with `smem` bytes of dynamic shared memory. raise_moe_decode_smem raises the
// variant's limit to the most dynamic shared memory a block may have and gives it, with how many
// blocks of that size one SM holds.
cudaError_t launch_moe_decode(int config, const MoeDecodeParams& params, int grid, size_t smem, cudaStream_t stream);
cudaError_t raise_moe_decode_smem(int config, int* max_smem, int* blocks_per_sm);

}  // namespace marlin::cuda::tiled_detail
