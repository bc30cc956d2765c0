// The routed form of the few-token kernel (tiled_routed_gemv.h): each grid row is one (token,
// expert) slot. The expert ids come from the previous kernel, so a block waits for that kernel
// before it loads any weights (no prefetch across the launch).
//
// Epilogues: every block counts itself done on its group's counter after its rows are visible
// device-wide (threadfence, then one atomicAdd); the block that arrives last has every row of the
// group and finishes it — SwiGLU of a slot or the weighted sum of a token's slots, with the same
// arithmetic as the kernels that do it on their own (slot_math.cuh) — and resets the counter for
// the next launch (a recorded graph replays the same counters). The result does not depend on
// which block is last.
#pragma once

#include <iterator>

#include "backend/cuda/group_counters.cuh"
#include "backend/cuda/moe_route.cuh"
#include "backend/cuda/slot_math.cuh"
#include "backend/cuda/tiled_gemv_kernel.cuh"
#include "backend/cuda/tiled_routed_gemv.h"

namespace marlin::cuda::tiled_detail {

__device__ __forceinline__ void routed_epilogue(const RoutedGemvParams& p, int slot) {
  const int n = p.gemv.n;
  if (p.epilogue == kEpilogueSiluMul) {
    if (!last_of_group(p.counters + slot, gridDim.x)) return;
    const int f = n / 2;
    const uint4* row = reinterpret_cast<const uint4*>(p.gemv.c + static_cast<long long>(slot) * n);
    uint4* out = reinterpret_cast<uint4*>(p.epilogue_out + static_cast<long long>(slot) * f);
    for (int c = threadIdx.x; c < f / 8; c += blockDim.x) out[c] = gated_chunk<Silu>(__ldcg(row + c), __ldcg(row + f / 8 + c));
  } else if (p.epilogue == kEpilogueCombine) {
    const int token = slot / p.top_k;
    if (!last_of_group(p.counters + token, gridDim.x * p.top_k)) return;
    const __half* y = p.gemv.c + static_cast<long long>(token) * p.top_k * n;
    const float* weights = p.slot_weights + token * p.top_k;
    for (int c = threadIdx.x; c < n; c += blockDim.x)
      p.epilogue_out[static_cast<long long>(token) * n + c] =
          weighted_slot_sum(y + c, weights, p.top_k, n, [](const __half* v) { return __ldcg(v); });
  }
}

// The expert of this block's slot: given, or routed here by the first warp (one launch fewer; every
// block of the token routes it again, which costs less than waiting for another kernel).
__device__ __forceinline__ int slot_expert(const RoutedGemvParams& p, int slot) {
  if (!p.route_logits) return p.expert_ids[slot];
  __shared__ RouteScratch scratch;
  __shared__ int expert;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x, token = slot / p.slot_div;
    int32_t id;
    float weight;
    route_token(p.route_logits + static_cast<long long>(token) * p.route.n_experts, p.route_bias, p.route, scratch,
                lane, id, weight);
    if (lane == slot % p.slot_div) expert = id;
    if (blockIdx.x == 0 && slot % p.slot_div == 0 && lane < p.slot_div) {
      p.routed_ids[slot + lane] = id;
      p.routed_weights[slot + lane] = weight;
    }
  }
  __syncthreads();
  return expert;
}

template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
__global__ void __launch_bounds__(kWarps * 32, 1) routed_gemv_kernel(const __grid_constant__ RoutedGemvParams p) {
  allow_dependent_launch();
  extern __shared__ __align__(16) float red[];
  grid_dependency_wait();
  GemvParams q = p.gemv;
  const int slot = blockIdx.y;
  q.tiles = p.expert_tiles[slot_expert(p, slot)];
  if constexpr (Codec<kCodec>::kRowScales) q.row_scales = reinterpret_cast<const float*>(q.tiles + p.tiles_bytes);
  q.a = p.gemv.a + static_cast<long long>(slot / p.slot_div) * p.gemv.k;
  q.c = p.gemv.c + static_cast<long long>(slot) * p.gemv.n;
  q.m = 1;
  TiledGemv<kCodec, kWarps, kStripsPerWarp, kFragsM, kDepth, kGroupsPerTile, kAsym>::template run<true>(q, red);
  routed_epilogue(p, slot);
}

template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
cudaError_t launch_routed_gemv_variant(const RoutedGemvParams& params, int grid_x, int slots, cudaStream_t stream) {
  return launch_overlapping(true, routed_gemv_kernel<kCodec, kWarps, kStripsPerWarp, kFragsM, kDepth, kGroupsPerTile, kAsym>,
                            dim3(grid_x, slots), dim3(kWarps * 32), size_t(kWarps * 32 * kStripsPerWarp * kFragsM * 16),
                            stream, params);
}

}  // namespace marlin::cuda::tiled_detail

// One routed table from an X-macro list X(codec, warps, strips_per_warp, frags_m, depth,
// groups_per_tile, asymmetric), as tiled_variant_table.cuh makes the other tables.
#define MARLIN_ROUTED_GEMV_CONFIG_ROW(CODEC, W, S, FM, D, G, Z) GemvConfig{CODEC, W, S, FM, D, G, Z},
#define MARLIN_ROUTED_GEMV_LAUNCH_CASE(CODEC, W, S, FM, D, G, Z) \
  if (index == i++) return launch_routed_gemv_variant<CODEC, W, S, FM, D, G, Z>(params, grid_x, slots, stream);

#define MARLIN_DEFINE_ROUTED_GEMV_TABLE(LIST)                                                               \
  namespace {                                                                                              \
  constexpr GemvConfig routed_configs[] = {LIST(MARLIN_ROUTED_GEMV_CONFIG_ROW)};                           \
  }                                                                                                        \
  const GemvConfig* routed_gemv_configs(int* count) {                                                      \
    *count = int(std::size(routed_configs));                                                               \
    return routed_configs;                                                                                 \
  }                                                                                                        \
  cudaError_t launch_routed_gemv(int index, const RoutedGemvParams& params, int grid_x, int slots,         \
                                 cudaStream_t stream) {                                                    \
    int i = 0;                                                                                             \
    LIST(MARLIN_ROUTED_GEMV_LAUNCH_CASE)                                                                   \
    return cudaErrorInvalidValue;                                                                          \
  }
