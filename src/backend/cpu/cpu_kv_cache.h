// The CPU backend's KV cache: fp32 blocks of the shared pool (model/kv_blocks.h), each block laid
// out [layer][kv_head][position in block][head_dim] so that a head's keys (and values) of one
// block are consecutive rows and a block copy is one memcpy. Memory is reserved for the pool up
// front but only touched as blocks fill.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>

#include "model/kv_cache.h"

namespace marlin {

class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(int n_layers, int n_kv_heads, int head_dim, int64_t capacity, int sequences, const KvCacheLayout& layout)
      : KvCache(capacity, sequences, layout.block_size > 0 ? layout.block_size : kDefaultBlockSize, layout.blocks),
        n_kv_heads_(n_kv_heads), head_dim_(head_dim),
        block_floats_(size_t(n_layers) * size_t(n_kv_heads) * size_t(block_size()) * size_t(head_dim)) {
    const size_t floats = size_t(blocks().total_blocks()) * block_floats_;
    keys_.reset(new float[floats]);  // left uninitialized: pages are committed on first write
    values_.reset(new float[floats]);
  }

  static constexpr int kDefaultBlockSize = 16;

  // The block_size() rows of `head_dim` floats of (physical block, layer, kv_head).
  const float* key_rows(int32_t block, int layer, int head) const { return keys_.get() + offset(block, layer, head); }
  const float* value_rows(int32_t block, int layer, int head) const {
    return values_.get() + offset(block, layer, head);
  }
  // Row of `head_dim` floats for (sequence, layer, kv_head, position), through the page table.
  float* key(int seq, int layer, int head, int64_t pos) { return keys_.get() + offset(seq, layer, head, pos); }
  float* value(int seq, int layer, int head, int64_t pos) { return values_.get() + offset(seq, layer, head, pos); }

 protected:
  void copy_block(int32_t from, int32_t to) override {
    std::memcpy(keys_.get() + size_t(to) * block_floats_, keys_.get() + size_t(from) * block_floats_,
                block_floats_ * sizeof(float));
    std::memcpy(values_.get() + size_t(to) * block_floats_, values_.get() + size_t(from) * block_floats_,
                block_floats_ * sizeof(float));
  }

 private:
  size_t offset(int32_t block, int layer, int head) const {
    return size_t(block) * block_floats_ +
           (size_t(layer) * size_t(n_kv_heads_) + size_t(head)) * size_t(block_size()) * size_t(head_dim_);
  }
  size_t offset(int seq, int layer, int head, int64_t pos) const {
    return offset(blocks().block_of(seq, pos), layer, head) + size_t(pos % block_size()) * size_t(head_dim_);
  }

  int n_kv_heads_, head_dim_;
  size_t block_floats_;  // of keys (or values) per block
  std::unique_ptr<float[]> keys_, values_;
};

}  // namespace marlin
