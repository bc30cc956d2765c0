// The CPU backend's KV cache: per sequence, layer and KV head, a contiguous run of fp32 positions.
// Memory is reserved for the capacity up front but only touched as positions fill.
#pragma once

#include <cstddef>
#include <memory>

#include "model/kv_cache.h"

namespace marlin {

class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(int n_layers, int n_kv_heads, int head_dim, int64_t capacity, int sequences = 1)
      : KvCache(capacity, sequences), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim) {
    const size_t floats =
        size_t(sequences) * size_t(n_layers) * size_t(n_kv_heads) * size_t(capacity) * size_t(head_dim);
    keys_.reset(new float[floats]);  // left uninitialized: pages are committed on first write
    values_.reset(new float[floats]);
  }

  // Row of `head_dim` floats for (sequence, layer, kv_head, position).
  float* key(int seq, int layer, int head, int64_t pos) { return keys_.get() + offset(seq, layer, head, pos); }
  float* value(int seq, int layer, int head, int64_t pos) { return values_.get() + offset(seq, layer, head, pos); }
  const float* key(int seq, int layer, int head, int64_t pos) const {
    return keys_.get() + offset(seq, layer, head, pos);
  }
  const float* value(int seq, int layer, int head, int64_t pos) const {
    return values_.get() + offset(seq, layer, head, pos);
  }

 private:
  size_t offset(int seq, int layer, int head, int64_t pos) const {
    const size_t run = (size_t(seq) * size_t(n_layers_) + size_t(layer)) * size_t(n_kv_heads_) + size_t(head);
    return (run * size_t(capacity()) + size_t(pos)) * size_t(head_dim_);
  }
  int n_layers_, n_kv_heads_, head_dim_;
  std::unique_ptr<float[]> keys_, values_;
};

}  // namespace marlin
