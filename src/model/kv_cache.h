// Key/value cache of one sequence, or of several sequences (slots) that a decode step can advance
// together, one token each: how many positions each sequence holds, out of a capacity per
// sequence. Sequences fill and empty independently, so a batch can take in a new sequence while
// others go on.
//
// The cache is paged (model/kv_blocks.h): positions live in blocks of a pool shared by every
// sequence, mapped by each sequence's page table as it grows (make_room) and returned to the pool
// when it shrinks (truncate). A sequence may start with another's prefix without recomputing it
// (share_prefix); a shared block is copied before it is written. Each backend derives its own
// storage by physical block (backend/cpu/cpu_kv_cache.h, the CUDA backend's paged cache).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "model/config.h"
#include "model/kv_blocks.h"

namespace marlin {

// How a cache is paged. Zeros pick the defaults.
struct KvCacheLayout {
  int block_size = 0;   // positions per block; 0: the backend's choice
  int64_t blocks = 0;   // blocks in the pool; 0: enough for every sequence at full capacity
};

// What a cache holds for one position in each layer: `heads` rows of `key_width` key values and
// `value_width` value values. Llama-style attention keeps n_kv_heads heads of head_dim keys and
// values; multi-head latent attention one row of the normalized latent and the RoPE'd shared key
// (kv_lora_rank + qk_rope_head_dim values) and no values.
struct KvGeometry {
  int layers = 0;
  int heads = 0;
  int key_width = 0;
  int value_width = 0;
  int64_t values_per_token() const { return int64_t(layers) * heads * (int64_t(key_width) + value_width); }
};

inline KvGeometry kv_geometry(const ModelConfig& c) {
  if (c.mla.enabled()) return {c.n_layers, 1, c.mla.kv_lora_rank + c.mla.qk_rope_head_dim, 0};
  return {c.n_layers, c.n_kv_heads, c.head_dim, c.head_dim};
}

class KvCache {
 public:
  KvCache(int64_t capacity, int sequences, int block_size, int64_t blocks)
      : capacity_(capacity),
        lengths_(size_t(sequences > 0 ? sequences : 0), 0),
        blocks_(blocks > 0 ? blocks : int64_t(sequences) * ((capacity + block_size - 1) / std::max(block_size, 1)),
                block_size, sequences, capacity) {}
  virtual ~KvCache() = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int64_t capacity() const { return capacity_; }
  int sequences() const { return int(lengths_.size()); }
  int64_t length(int seq = 0) const { return lengths_[index(seq)]; }
  const KvBlockTable& blocks() const { return blocks_; }
  int block_size() const { return blocks_.block_size(); }
  // Bytes of keys and values one position takes, over every layer.
  virtual int64_t bytes_per_token() const = 0;

  // Empties every sequence.
  void clear() {
    for (int s = 0; s < sequences(); ++s) truncate(0, s);
  }
  // Drops the positions of sequence `seq` from `length` on (0: the whole sequence, e.g. a slot
  // whose request ended; more: reusing a common prompt prefix), returning unneeded blocks.
  void truncate(int64_t length, int seq = 0) {
    int64_t& l = lengths_[index(seq)];
    l = length < l ? (length > 0 ? length : 0) : l;
    blocks_.keep(seq, l);
  }
  // Maps writable blocks for the next `count` positions of sequence `seq` (before a step writes
  // them); throws when the pool runs out of blocks.
  void make_room(int64_t count, int seq = 0) {
    const int64_t l = length(seq);
    MARLIN_CHECK(l + count <= capacity_, "context is full ({} tokens)", capacity_);
    for (const BlockCopy& copy : blocks_.make_writable(seq, l, l + count)) copy_block(copy.from, copy.to);
  }
  // Counts `count` positions written by the step just run (make_room came first).
  void advance(int64_t count, int seq = 0) {
    int64_t& l = lengths_[index(seq)];
    MARLIN_CHECK(l + count <= capacity_, "context is full ({} tokens)", capacity_);
    MARLIN_CHECK(blocks_.blocks_for(l + count) <= int64_t(blocks_.page_table(seq).size()),
                 "kv cache: sequence {} advanced past its blocks (internal error)", seq);
    l += count;
  }
  // Empty sequence `dst` starts with the first `length` positions of sequence `src`, mapping its
  // blocks instead of computing them again.
  void share_prefix(int dst, int src, int64_t length) {
    MARLIN_CHECK(this->length(dst) == 0 && length <= this->length(src),
                 "kv cache: sequence {} cannot take {} positions of sequence {}", dst, length, src);
    blocks_.keep(dst, 0);
    blocks_.share(dst, src, length);
    lengths_[size_t(dst)] = length;
  }

 protected:
  // Copies the keys and values of every layer of physical block `from` into block `to`.
  virtual void copy_block(int32_t from, int32_t to) = 0;

 private:
  size_t index(int seq) const {
    MARLIN_CHECK(seq >= 0 && seq < sequences(), "kv cache: no sequence {} (it holds {})", seq, sequences());
    return size_t(seq);
  }

  int64_t capacity_;
  std::vector<int64_t> lengths_;
  KvBlockTable blocks_;
};

}  // namespace marlin
