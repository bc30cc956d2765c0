#include "tokenizer/vocab.h"

#include <algorithm>
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

namespace {

uint64_t slot_tag(uint64_t hash) { return hash & 0xFFFFFFFF00000000ULL; }
int32_t slot_id(uint64_t slot) { return static_cast<int32_t>(slot & 0xFFFFFFFF) - 1; }

}  // namespace

void Vocab::build_index() {
  slots_.assign(table_size_for(spans_.size()), 0);
  const size_t mask = slots_.size() - 1;
  for (int32_t id = 0; id < size(); ++id) {
    std::string_view t = text(id);
    if (t.empty()) continue;
    const uint64_t hash = hash_bytes(t);
    size_t slot = hash & mask;
    while (slots_[slot] != 0 && (slot_tag(slots_[slot]) != slot_tag(hash) || text(slot_id(slots_[slot])) != t)) {
      slot = (slot + 1) & mask;
    }
    slots_[slot] = slot_tag(hash) | static_cast<uint32_t>(id + 1);
  }
}

std::optional<int32_t> Vocab::find(std::string_view t, uint64_t hash) const {
  if (slots_.empty() || t.empty()) return std::nullopt;
  const size_t mask = slots_.size() - 1;
  for (size_t slot = hash & mask; slots_[slot] != 0; slot = (slot + 1) & mask) {
    if (slot_tag(slots_[slot]) == slot_tag(hash) && text(slot_id(slots_[slot])) == t) return slot_id(slots_[slot]);
  }
  return std::nullopt;
}

void MergeTable::reserve(size_t count) {
  size_t size = table_size_for(count);
  if (size <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(size, Slot{kEmptyKey, Entry{}});
  count_ = 0;
  for (const auto& slot : old) {
    if (slot.key != kEmptyKey) insert(int32_t(slot.key >> 32), int32_t(slot.key & 0xFFFFFFFF), slot.entry);
  }
}

void MergeTable::grow() { reserve(count_ + 1 + count_ / 2); }

void MergeTable::insert(int32_t left, int32_t right, Entry entry) {
  if (slots_.empty() || (count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t k = key(left, right);
  const size_t mask = slots_.size() - 1;
  size_t i = mix(k) & mask;
  while (slots_[i].key != kEmptyKey && slots_[i].key != k) i = (i + 1) & mask;
  if (slots_[i].key == kEmptyKey) ++count_;
  slots_[i] = Slot{k, entry};
}

const MergeTable::Entry* MergeTable::find(int32_t left, int32_t right) const {
  if (slots_.empty()) return nullptr;
  const uint64_t k = key(left, right);
  const size_t mask = slots_.size() - 1;
  for (size_t i = mix(k) & mask; slots_[i].key != kEmptyKey; i = (i + 1) & mask) {
    if (slots_[i].key == k) return &slots_[i].entry;
  }
  return nullptr;
}

std::vector<MergeTable::Merge> MergeTable::by_rank() const {
  std::vector<Merge> merges;
  merges.reserve(count_);
  for (const auto& slot : slots_) {
    if (slot.key != kEmptyKey) merges.push_back({int32_t(slot.key >> 32), int32_t(slot.key & 0xFFFFFFFF), slot.entry});
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.entry.rank < b.entry.rank; });
  return merges;
}

}  // namespace marlin::tok
