// Routing a token among a sparse MLP's experts on the device, one warp per token (moe_route.cuh):
// the kernel parameters and their checks. Plain C++17: no device code here.
#pragma once

#include "model/config.h"

namespace marlin::cuda {

constexpr int kRoutePerLane = 8;    // routed experts per lane: n_experts ≤ 256
constexpr int kRouteMaxGroups = 32;  // expert groups of group-limited routing

struct RouteParams {
  int rows, n_experts, top_k, n_shared;
  bool sigmoid, renormalize;
  int n_groups, top_groups;
  bool top_two_sum;
  float scale;
};

// The parameters of routing `rows` tokens among n_experts routed experts by `routing`; a clear
// error (naming `op`) where they do not fit one warp per token.
RouteParams route_params(const char* op, int rows, int n_experts, const MoeRouting& routing);

}  // namespace marlin::cuda
