#include "tokenizer/vocab.h"

#include <cstring>

#include "core/error.h"

namespace marlin::tok {
namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

size_t table_size_for(size_t count) {
  size_t size = 16;
  while (size < count * 2) size *= 2;
  return size;
}

}  // namespace

uint64_t hash_bytes(std::string_view bytes) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ bytes.size();
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    h = mix(h ^ word) + 0x9E3779B97F4A7C15ULL;
  }
  uint64_t tail = 0;
  if (i < bytes.size()) std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  return mix(h ^ tail);
}

void Vocab::resize(int32_t count, size_t expected_bytes) {
  MARLIN_CHECK(count >= 0, "tokenizer: negative vocabulary size {}", count);
  spans_.assign(static_cast<size_t>(count), Span{});
  arena_.clear();
  arena_.reserve(expected_bytes);
  slots_.clear();
}

void Vocab::set(int32_t id, std::string_view text) {
  MARLIN_CHECK(id >= 0 && id < size(), "tokenizer: token id {} is outside the vocabulary of {}", id, size());
  MARLIN_CHECK(text.size() <= UINT32_MAX, "tokenizer: token {} is too long", id);
  spans_[static_cast<size_t>(id)] = Span{arena_.size(), static_cast<uint32_t>(text.size())};
  arena_.append(text);
}

void Vocab::build_index() {
  slots_.assign(table_size_for(spans_.size()), -1);
  const size_t mask = slots_.size() - 1;
  for (int32_t id = 0; id < size(); ++id) {
    std::string_view t = text(id);
    if (t.empty()) continue;
    size_t slot = hash_bytes(t) & mask;
    while (slots_[slot] >= 0 && text(slots_[slot]) != t) slot = (slot + 1) & mask;
    slots_[slot] = id;
  }
}

std::optional<int32_t> Vocab::find(std::string_view t) const {
  if (slots_.empty() || t.empty()) return std::nullopt;
  const size_t mask = slots_.size() - 1;
  size_t slot = hash_bytes(t) & mask;
  while (slots_[slot] >= 0) {
    if (text(slots_[slot]) == t) return slots_[slot];
    slot = (slot + 1) & mask;
  }
  return std::nullopt;
}

void MergeTable::reserve(size_t count) {
  size_t size = table_size_for(count);
  if (size <= keys_.size()) return;
  std::vector<uint64_t> old_keys = std::move(keys_);
  std::vector<Entry> old_entries = std::move(entries_);
  keys_.assign(size, kEmptyKey);
  entries_.assign(size, Entry{});
  count_ = 0;
  for (size_t i = 0; i < old_keys.size(); ++i) {
    if (old_keys[i] == kEmptyKey) continue;
    insert(int32_t(old_keys[i] >> 32), int32_t(old_keys[i] & 0xFFFFFFFF), old_entries[i]);
  }
}

void MergeTable::grow() { reserve(count_ + 1 + count_ / 2); }

void MergeTable::insert(int32_t left, int32_t right, Entry entry) {
  if (keys_.empty() || (count_ + 1) * 2 > keys_.size()) grow();
  const uint64_t k = key(left, right);
  const size_t mask = keys_.size() - 1;
  size_t slot = mix(k) & mask;
  while (keys_[slot] != kEmptyKey && keys_[slot] != k) slot = (slot + 1) & mask;
  if (keys_[slot] == kEmptyKey) ++count_;
  keys_[slot] = k;
  entries_[slot] = entry;
}

const MergeTable::Entry* MergeTable::find(int32_t left, int32_t right) const {
  if (keys_.empty()) return nullptr;
  const uint64_t k = key(left, right);
  const size_t mask = keys_.size() - 1;
  size_t slot = mix(k) & mask;
  while (keys_[slot] != kEmptyKey) {
    if (keys_[slot] == k) return &entries_[slot];
    slot = (slot + 1) & mask;
  }
  return nullptr;
}

}  // namespace marlin::tok
