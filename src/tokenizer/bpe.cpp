#include "tokenizer/bpe.h"

#include <algorithm>

#include <fmt/format.h>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace marlin::tok {
namespace {

struct PendingMerge {
  int32_t rank;
  int32_t pos;
  int32_t merged;
};

// std heap functions build a max-heap; "greater" puts the lowest (rank, pos) on top.
bool later(const PendingMerge& a, const PendingMerge& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

struct Scratch {
  std::vector<int32_t> ids;
  std::vector<int32_t> prev, next;
  std::vector<PendingMerge> heap;
  std::string spelled;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

BpeModel::BpeModel(Vocab vocab, MergeTable merges, BpeOptions options)
    : vocab_(std::move(vocab)), merges_(std::move(merges)), options_(options) {
  byte_symbol_.fill(-1);
  fallback_token_.fill(-1);
  std::string text;
  for (int b = 0; b < 256; ++b) {
    text.clear();
    byte_level_spell(text, std::string_view(reinterpret_cast<const char*>(&b), 1));
    byte_symbol_[b] = vocab_.find(text).value_or(-1);
    fallback_token_[b] = vocab_.find(fmt::format("<0x{:02X}>", b)).value_or(-1);
    if (b < 128) ascii_symbol_[b] = vocab_.find(std::string(1, static_cast<char>(b))).value_or(-1);
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
  // Unknown characters follow HF's merge_word: with fuse_unk, a run of them becomes one unk.
  const int32_t unk = options_.unk_id.value_or(-1);
  int32_t pending_unk = -1;
  auto unknown = [&] {
    if (unk < 0) return;  // no unk token: the character is dropped
    if (pending_unk >= 0 && !options_.fuse_unk) ids.push_back(pending_unk);
    pending_unk = unk;
  };
  auto known = [&](int32_t id) {
    if (pending_unk >= 0) ids.push_back(pending_unk);
    pending_unk = -1;
    ids.push_back(id);
  };
  if (options_.byte_level) {
    for (char c : word) {
      int32_t id = byte_symbol_[static_cast<uint8_t>(c)];
      if (id >= 0) known(id); else unknown();
    }
  } else {
    size_t pos = 0;
    while (pos < word.size()) {
      const auto byte = static_cast<uint8_t>(word[pos]);
      if (byte < 128 && ascii_symbol_[byte] >= 0) {
        known(ascii_symbol_[byte]);
        ++pos;
        continue;
      }
      size_t n = utf8_sequence_length(word, pos);
      if (n == 0) n = 1;  // a stray invalid byte: only byte fallback can spell it
      std::string_view ch = word.substr(pos, n);
      pos += n;
      if (auto id = vocab_.find(ch)) {
        known(*id);
        continue;
      }
      if (options_.byte_fallback &&
          std::all_of(ch.begin(), ch.end(), [&](char b) { return fallback_token_[uint8_t(b)] >= 0; })) {
        // HF pushes the byte tokens without flushing a pending unk first; keep that order.
        for (char b : ch) ids.push_back(fallback_token_[static_cast<uint8_t>(b)]);
        continue;
      }
      unknown();
    }
  }
  if (pending_unk >= 0) ids.push_back(pending_unk);
}

void BpeModel::merge(std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
  Scratch& s = scratch();
  const int32_t n = static_cast<int32_t>(ids.size());
  s.prev.resize(ids.size());
  s.next.resize(ids.size());
  s.heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    s.prev[i] = i - 1;
    s.next[i] = i + 1 < n ? i + 1 : -1;
    if (i + 1 < n) {
      if (const auto* m = merges_.find(ids[i], ids[i + 1])) s.heap.push_back({m->rank, i, m->merged});
    }
  }
  std::make_heap(s.heap.begin(), s.heap.end(), later);
  // ids[i] < 0 marks a symbol absorbed by its left neighbour.
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), later);
    PendingMerge top = s.heap.back();
    s.heap.pop_back();
    const int32_t pos = top.pos;
    if (ids[pos] < 0 || s.next[pos] < 0) continue;
    const int32_t right = s.next[pos];
    // Stale entries are recognised as HF does: by the merged id the current pair would give.
    const auto* m = merges_.find(ids[pos], ids[right]);
    if (m == nullptr || m->merged != top.merged) continue;
    ids[pos] = top.merged;
    ids[right] = -1;
    s.next[pos] = s.next[right];
    if (s.next[pos] >= 0) s.prev[s.next[pos]] = pos;
    if (s.prev[pos] >= 0) {
      const int32_t left = s.prev[pos];
      if (const auto* lm = merges_.find(ids[left], ids[pos])) {
        s.heap.push_back({lm->rank, left, lm->merged});
        std::push_heap(s.heap.begin(), s.heap.end(), later);
      }
    }
    if (s.next[pos] >= 0) {
      if (const auto* rm = merges_.find(ids[pos], ids[s.next[pos]])) {
        s.heap.push_back({rm->rank, pos, rm->merged});
        std::push_heap(s.heap.begin(), s.heap.end(), later);
      }
    }
  }
  for (int32_t id : ids) {
    if (id >= 0) out.push_back(id);
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    std::optional<int32_t> whole;
    if (options_.byte_level) {
      std::string& spelled = scratch().spelled;
      spelled.clear();
      byte_level_spell(spelled, word);
      whole = vocab_.find(spelled);
    } else {
      whole = vocab_.find(word);
    }
    if (whole) {
      out.push_back(*whole);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  Scratch& s = scratch();
  s.ids.clear();
  initial_symbols(word, s.ids);
  const size_t first = out.size();
  merge(s.ids, out);
  if (cacheable) {
    std::vector<int32_t> result(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::move(result));
  }
}

}  // namespace marlin::tok
