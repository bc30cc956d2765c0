// A token vocabulary: every token's text in one arena, with an open-addressing index from text
// to id, so that a 262k-entry vocabulary costs a few allocations rather than one per token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace marlin::tok {

uint64_t hash_bytes(std::string_view bytes);

class Vocab {
 public:
  // Sets the size; every token starts empty and unindexed.
  void resize(int32_t count, size_t expected_bytes = 0);
  // Sets a token's text (each id at most once, before build_index).
  void set(int32_t id, std::string_view text);
  // Indexes every token with non-empty text in id order; for a text held by several ids the
  // highest id wins the lookup, as a Python/serde map built in id order would.
  void build_index();

  int32_t size() const { return static_cast<int32_t>(spans_.size()); }
  std::string_view text(int32_t id) const {
    const auto& s = spans_[static_cast<size_t>(id)];
    return {arena_.data() + s.offset, s.length};
  }
  std::optional<int32_t> find(std::string_view text) const { return find(text, hash_bytes(text)); }
  // With the text's hash_bytes() already known; prefetch() lets a caller overlap the memory
  // accesses of many lookups (loading a 262k vocabulary is dominated by them).
  std::optional<int32_t> find(std::string_view text, uint64_t hash) const;
  void prefetch(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
  }

 private:
  struct Span {
    uint64_t offset = 0;
    uint32_t length = 0;
  };
  std::string arena_;
  std::vector<Span> spans_;
  // Each slot holds (id + 1) in the low 32 bits (0 = empty) and 32 bits of the text's hash in
  // the high bits, so most probes that miss never touch the arena. Size is a power of two.
  std::vector<uint64_t> slots_;
};

// (left id, right id) -> (rank, merged id), the BPE merge table.
class MergeTable {
 public:
  struct Entry {
    int32_t rank;
    int32_t merged;
  };
  void reserve(size_t count);
  // A later insert of the same pair replaces the earlier one (as HF's map does).
  void insert(int32_t left, int32_t right, Entry entry);
  const Entry* find(int32_t left, int32_t right) const;
  size_t size() const { return count_; }
  struct Merge {
    int32_t left, right;
    Entry entry;
  };
  // Every merge, lowest rank first.
  std::vector<Merge> by_rank() const;

 private:
  static uint64_t key(int32_t l, int32_t r) {
    return (uint64_t(uint32_t(l)) << 32) | uint32_t(r);
  }
  void grow();
  struct Slot {
    uint64_t key;  // kEmptyKey marks a free slot
    Entry entry;
  };
  std::vector<Slot> slots_;  // key and value side by side: one cache miss per probe
  size_t count_ = 0;
};

}  // namespace marlin::tok
