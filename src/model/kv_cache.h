// Key/value cache of one sequence: per layer, per KV head, a contiguous run of positions.
// Memory is reserved for `capacity` positions up front but only touched as positions fill.
#pragma once

#include <cstdint>
#include <memory>

#include "core/error.h"

namespace marlin {

class KvCache {
 public:
  KvCache(int n_layers, int n_kv_heads, int head_dim, int64_t capacity)
      : n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim), capacity_(capacity) {
    const size_t floats = size_t(n_layers) * size_t(n_kv_heads) * size_t(capacity) * size_t(head_dim);
    keys_.reset(new float[floats]);  // left uninitialized: pages are committed on first write
    values_.reset(new float[floats]);
  }

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  void clear() { length_ = 0; }
  // Drops positions from `length` on (e.g. to reuse a common prompt prefix).
  void truncate(int64_t length) { length_ = length < length_ ? length : length_; }
  void advance(int64_t count) {
    MARLIN_CHECK(length_ + count <= capacity_, "context is full ({} tokens)", capacity_);
    length_ += count;
  }

  // Row of `head_dim` floats for (layer, kv_head, position).
  float* key(int layer, int head, int64_t pos) { return keys_.get() + offset(layer, head, pos); }
  float* value(int layer, int head, int64_t pos) { return values_.get() + offset(layer, head, pos); }
  const float* key(int layer, int head, int64_t pos) const { return keys_.get() + offset(layer, head, pos); }
  const float* value(int layer, int head, int64_t pos) const { return values_.get() + offset(layer, head, pos); }

 private:
  size_t offset(int layer, int head, int64_t pos) const {
    return ((size_t(layer) * size_t(n_kv_heads_) + size_t(head)) * size_t(capacity_) + size_t(pos)) *
           size_t(head_dim_);
  }
  int n_layers_, n_kv_heads_, head_dim_;
  int64_t capacity_;
  int64_t length_ = 0;
  std::unique_ptr<float[]> keys_, values_;
};

}  // namespace marlin
