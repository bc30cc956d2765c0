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
  std::optional<int32_t> find(std::string_view text) const;

 private:
  struct Span {
    uint64_t offset = 0;
    uint32_t length = 0;
  };
  std::string arena_;
  std::vector<Span> spans_;
  std::vector<int32_t> slots_;  // -1 = empty; size is a power of two
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

 private:
  static uint64_t key(int32_t l, int32_t r) {
    return (uint64_t(uint32_t(l)) << 32) | uint32_t(r);
  }
  void grow();
  std::vector<uint64_t> keys_;  // kEmpty marks a free slot
  std::vector<Entry> entries_;
  size_t count_ = 0;
};

}  // namespace marlin::tok
