// The sparse MLP of a mixture-of-experts layer on the CPU (Backend::moe): routing each token to
// its top-k experts, then running every chosen expert once over all the tokens routed to it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "core/thread_pool.h"

namespace marlin::cpu {

struct ExpertChoice {
  int expert = 0;
  float weight = 0;
};

// The routing.top_k experts of one token from its n_experts router logits (routed experts only),
// best first (equal scores: the lower expert index first), with their weights, by Backend::moe's
// rule. score_bias: n_experts values or nullptr. out holds routing.top_k entries.
void route_token(const float* logits, const float* score_bias, int n_experts, const MoeRouting& routing,
                 ExpertChoice* out);

// Refuses routing that does not fit n_experts routed experts (top_k, groups).
void check_routing(const MoeRouting& routing, int n_experts);

// Scratch memory of moe_forward, kept between calls.
struct MoeScratch {
  std::vector<ExpertChoice> choices;
  std::vector<std::vector<int64_t>> tokens;  // per expert: rows routed to it
  std::vector<std::vector<float>> weights;   // per expert: their weights
  std::vector<float> x, gate, up, y;
};

// out (rows × d_model) = the sparse MLP of h (rows × d_model) given router_logits
// (rows × routed experts): experts holds the routed experts then routing.n_shared shared ones;
// score_bias is empty or one per routed expert. Expert outputs are added to each row in expert
// order.
void moe_forward(std::span<const ExpertWeights> experts, std::span<const float> score_bias, const float* h, int64_t rows, int64_t d_model,
                 const float* router_logits, const MoeRouting& routing, float* out, ThreadPool& pool,
                 MoeScratch& scratch, const ExpertInputObserver* observer);

}  // namespace marlin::cpu
