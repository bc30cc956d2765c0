// Key/value cache of one sequence, or of a batch of sequences that advance together (one token each
// per decode step): how many positions each holds, out of a fixed capacity. Each backend derives
// its own storage (backend/cpu/cpu_kv_cache.h, the CUDA backend's paged cache).
#pragma once

#include <cstdint>

#include "core/error.h"

namespace marlin {

class KvCache {
 public:
  explicit KvCache(int64_t capacity, int sequences = 1) : capacity_(capacity), sequences_(sequences) {}
  virtual ~KvCache() = default;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int sequences() const { return sequences_; }
  void clear() { length_ = 0; }
  // Drops positions from `length` on (e.g. to reuse a common prompt prefix).
  void truncate(int64_t length) { length_ = length < length_ ? length : length_; }
  void advance(int64_t count) {
    MARLIN_CHECK(length_ + count <= capacity_, "context is full ({} tokens)", capacity_);
    length_ += count;
  }

 private:
  int64_t capacity_;
  int sequences_;
  int64_t length_ = 0;
};

}  // namespace marlin
