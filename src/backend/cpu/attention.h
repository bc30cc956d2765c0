// Causal (optionally sliding-window) multi-head attention with grouped KV heads over a sequence's KV cache (CPU).
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_kv_cache.h"
#include "core/thread_pool.h"

namespace marlin {

struct AttentionShape {
  int n_heads;
  int n_kv_heads;  // each KV head serves n_heads / n_kv_heads query heads
  int head_dim;
  float scale;     // of the scores q·k
  int window = 0;  // > 0: a query at position p sees only keys (p - window, p]
};

// q: n_tokens rows of n_heads × head_dim values, row t at q + t·q_stride: the queries of positions
// pos0 .. pos0+n_tokens-1 of sequence `seq`, whose keys and values are already in `cache` (layer
// `layer`). Token t attends to positions [0, pos0 + t], or its last shape.window positions.
// out: n_tokens × n_heads × head_dim. Scores are scaled by shape.scale.
void causal_attention(const AttentionShape& shape, const float* q, int64_t q_stride, int64_t n_tokens,
                      int64_t pos0, const CpuKvCache& cache, int seq, int layer, float* out, ThreadPool& pool);

}  // namespace marlin
