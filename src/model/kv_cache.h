// Key/value cache of one sequence, or of several sequences (slots) that a decode step can advance
// together, one token each: how many positions each sequence holds, out of a fixed capacity per
// sequence. Sequences fill and empty independently, so a batch can take in a new sequence while
// others go on. Each backend derives its own storage (backend/cpu/cpu_kv_cache.h, the CUDA
// backend's paged cache).
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.h"

namespace marlin {

class KvCache {
 public:
  explicit KvCache(int64_t capacity, int sequences = 1)
      : capacity_(capacity), lengths_(size_t(sequences > 0 ? sequences : 0), 0) {}
  virtual ~KvCache() = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int64_t capacity() const { return capacity_; }
  int sequences() const { return int(lengths_.size()); }
  int64_t length(int seq = 0) const { return lengths_[index(seq)]; }
  // Empties every sequence.
  void clear() { lengths_.assign(lengths_.size(), 0); }
  // Drops the positions of sequence `seq` from `length` on (0: the whole sequence, e.g. a slot
  // whose request ended; more: reusing a common prompt prefix).
  void truncate(int64_t length, int seq = 0) {
    int64_t& l = lengths_[index(seq)];
    l = length < l ? (length > 0 ? length : 0) : l;
  }
  void advance(int64_t count, int seq = 0) {
    int64_t& l = lengths_[index(seq)];
    MARLIN_CHECK(l + count <= capacity_, "context is full ({} tokens)", capacity_);
    l += count;
  }

 private:
  size_t index(int seq) const {
    MARLIN_CHECK(seq >= 0 && seq < sequences(), "kv cache: no sequence {} (it holds {})", seq, sequences());
    return size_t(seq);
  }

  int64_t capacity_;
  std::vector<int64_t> lengths_;
};

}  // namespace marlin
