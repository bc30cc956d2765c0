// Causal multi-head latent attention over a compressed KV cache (CPU), with kv_b_proj's
// up-projections absorbed: scores and the weighted sum are computed against the cached latent.
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_kv_cache.h"
#include "core/thread_pool.h"

namespace marlin {

struct MlaShape {
  int n_heads;
  int qk_nope;   // per head: query values without position
  int qk_rope;   // per head: rotated query values (the shared key's width)
  int kv_lora;   // latent width
  int v_dim;     // per head: output values
  float scale;   // softmax scale
};

// q: n_tokens rows of n_heads × [q_nope | q_pe] (q_pe already rotated), row t at q + t·q_stride:
// the queries of positions pos0 .. pos0+n_tokens-1 of sequence `seq`, whose latents and shared
// keys (one cache row [c_kv: kv_lora | k_pe: qk_rope] per position) are already in `cache` for
// `layer`; token t attends to positions [0, pos0 + t]. kv_up: n_heads × (qk_nope + v_dim) rows of
// kv_lora floats (kv_b_proj: per head W_UK, then W_UV). out: n_tokens × n_heads × v_dim.
void mla_causal_attention(const MlaShape& shape, const float* q, int64_t q_stride, int64_t n_tokens, int64_t pos0,
                          const float* kv_up, const CpuKvCache& cache, int seq, int layer, float* out,
                          ThreadPool& pool);

}  // namespace marlin
