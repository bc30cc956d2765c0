// The CPU backend's KV cache: fp32 blocks of the shared pool (model/kv_blocks.h), each block laid
// out [layer][kv_head][position in block][width] (keys and values in separate arrays, of the
// geometry's key and value widths) so that a head's keys (and values) of one block are consecutive
// rows and a block copy is one memcpy. A geometry without values (multi-head latent attention
// keeps one key row of latent and RoPE key) has no value array. Memory is reserved for the pool up
// front but only touched as blocks fill.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>

#include "model/kv_cache.h"

namespace marlin {

class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(const KvGeometry& geometry, int64_t capacity, int sequences, const KvCacheLayout& layout)
      : KvCache(capacity, sequences, layout.block_size > 0 ? layout.block_size : kDefaultBlockSize, layout.blocks),
        geometry_(geometry),
        block_keys_(block_floats(geometry.key_width)),
        block_values_(block_floats(geometry.value_width)) {
    const auto blocks_total = size_t(blocks().total_blocks());
    keys_.reset(new float[blocks_total * block_keys_]);  // left uninitialized: pages are committed on first write
    if (block_values_ > 0) values_.reset(new float[blocks_total * block_values_]);
  }

  static constexpr int kDefaultBlockSize = 16;

  const KvGeometry& geometry() const { return geometry_; }
  int64_t bytes_per_token() const override { return geometry_.values_per_token() * int64_t(sizeof(float)); }

  // The block_size() rows of key_width (value_width) floats of (physical block, layer, kv_head).
  const float* key_rows(int32_t block, int layer, int head) const {
    return keys_.get() + offset(block, layer, head, geometry_.key_width);
  }
  const float* value_rows(int32_t block, int layer, int head) const {
    return values_.get() + offset(block, layer, head, geometry_.value_width);
  }
  // Row of key_width (value_width) floats for (sequence, layer, kv_head, position), through the
  // page table.
  float* key(int seq, int layer, int head, int64_t pos) {
    return keys_.get() + offset(seq, layer, head, pos, geometry_.key_width);
  }
  float* value(int seq, int layer, int head, int64_t pos) {
    return values_.get() + offset(seq, layer, head, pos, geometry_.value_width);
  }

 protected:
  void copy_block(int32_t from, int32_t to) override {
    std::memcpy(keys_.get() + size_t(to) * block_keys_, keys_.get() + size_t(from) * block_keys_,
                block_keys_ * sizeof(float));
    if (block_values_ == 0) return;
    std::memcpy(values_.get() + size_t(to) * block_values_, values_.get() + size_t(from) * block_values_,
                block_values_ * sizeof(float));
  }

 private:
  size_t block_floats(int width) const {
    return size_t(geometry_.layers) * size_t(geometry_.heads) * size_t(block_size()) * size_t(width);
  }
  size_t offset(int32_t block, int layer, int head, int width) const {
    return (size_t(block) * size_t(geometry_.layers) * size_t(geometry_.heads) + size_t(layer) * size_t(geometry_.heads) +
            size_t(head)) *
           size_t(block_size()) * size_t(width);
  }
  size_t offset(int seq, int layer, int head, int64_t pos, int width) const {
    return offset(blocks().block_of(seq, pos), layer, head, width) + size_t(pos % block_size()) * size_t(width);
  }

  KvGeometry geometry_;
  size_t block_keys_, block_values_;  // floats per block
  std::unique_ptr<float[]> keys_, values_;
};

}  // namespace marlin
