// One token's routing by one warp (moe_route.h), as backend/cpu/moe.h routes: the scores of its
// n_experts ≤ 32·kRoutePerLane logits and the choice scores (plus the bias), the best groups when
// routing is group-limited, then top_k rounds of a warp argmax (equal scores: the lower expert
// index) by warp reductions (sm_80 on). Shared by moe_route, the routed gate|up product that
// routes its own slots, and the one-launch decode step.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/moe_route.h"

namespace marlin::cuda {

// The warp's scratch for group-limited routing.
struct RouteScratch {
  float choice[32 * kRoutePerLane];
  float group[kRouteMaxGroups];
};

// Floats as unsigned keys of the same order (-0 as +0), and back; 0 is below every float's key.
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t bits = __float_as_uint(f + 0.0f);
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}
__device__ __forceinline__ float from_order_key(uint32_t key) {
  return __uint_as_float(key & 0x80000000u ? key & 0x7fffffffu : ~key);
}

// The token's slots: lane j < top_k + n_shared gets slot j's expert (best first, then the shared
// experts n_experts, n_experts + 1, ...) and weight (times p.scale; 1 for the shared experts).
// Every lane of the warp calls it. Lane k keeps the k-th choice, so nothing is indexed at run time
// and no local memory is used.
__device__ __forceinline__ void route_token(const float* logits, const float* bias, const RouteParams& p,
                                            RouteScratch& scratch, int lane, int32_t& id, float& weight) {
  const int n = p.n_experts;
  float score[kRoutePerLane];
  float top = -INFINITY;
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) {
    const int e = lane + 32 * i;
    score[i] = e < n ? logits[e] : -INFINITY;
    top = fmaxf(top, score[i]);
  }
  top = from_order_key(__reduce_max_sync(0xffffffffu, order_key(top)));
  float sum = 0;
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) {
    const int e = lane + 32 * i;
    if (e >= n) continue;
    score[i] = p.sigmoid ? 1.0f / (1.0f + expf(-score[i])) : expf(score[i] - top);
    sum += score[i];
  }
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  float choice[kRoutePerLane];
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) {
    const int e = lane + 32 * i;
    if (!p.sigmoid) score[i] /= sum;
    choice[i] = e < n ? score[i] + (bias ? bias[e] : 0.0f) : -INFINITY;
  }
  if (p.n_groups > 1) {
    // Each of the first n_groups lanes scores its group from the warp's shared copy, ranks it
    // among the others, and the experts of groups ranked top_groups or worse are ruled out.
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i) scratch.choice[lane + 32 * i] = choice[i];
    __syncwarp();
    const int size = n / p.n_groups;
    if (lane < p.n_groups) {
      float best = -INFINITY, second = -INFINITY;
      for (int e = lane * size; e < (lane + 1) * size; ++e) {
        const float c = scratch.choice[e];
        if (c > best) second = best, best = c;
        else if (c > second) second = c;
      }
      scratch.group[lane] = p.top_two_sum ? best + second : best;
    }
    __syncwarp();
    bool kept = false;
    if (lane < p.n_groups) {
      const float mine = scratch.group[lane];
      int rank = 0;
      for (int g = 0; g < p.n_groups; ++g) {
        const float other = scratch.group[g];
        rank += other > mine || (other == mine && g < lane);
      }
      kept = rank < p.top_groups;
    }
    const unsigned kept_groups = __ballot_sync(0xffffffffu, kept);
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i) {
      const int e = lane + 32 * i;
      if (e < n && !(kept_groups >> (e / size) & 1u)) choice[i] = -INFINITY;
    }
    __syncwarp();  // the scratch may be reused by the next token
  }
  // top_k rounds: each lane's best candidate (the highest key, the lowest index of equal keys),
  // then the warp's best key and the lowest expert index holding it (one reduction each), which
  // its lane marks taken.
  uint32_t key[kRoutePerLane];
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) key[i] = lane + 32 * i < n ? order_key(choice[i]) : 0u;
  float chosen_sum = 0, my_score = 0;
  id = n;
  for (int k = 0; k < p.top_k; ++k) {
    uint32_t best = 0;
    int best_i = 0;
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i)
      if (key[i] > best) best = key[i], best_i = i;
    const uint32_t warp_best = __reduce_max_sync(0xffffffffu, best);
    const int best_e = int(__reduce_min_sync(0xffffffffu, best == warp_best ? uint32_t(lane + 32 * best_i) : ~0u));
    float taken_score = 0;
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i)
      if (lane + 32 * i == best_e) key[i] = 0u, taken_score = score[i];
    const float best_score = __shfl_sync(0xffffffffu, taken_score, best_e % 32);
    if (lane == k) my_score = best_score, id = best_e;
    chosen_sum += best_score;
  }
  if (lane < p.top_k) {
    weight = (p.renormalize ? my_score / chosen_sum : my_score) * p.scale;
  } else {
    id = n + lane - p.top_k;  // a shared expert (meaningful for lanes below top_k + n_shared)
    weight = 1.0f;
  }
}

}  // namespace marlin::cuda
