#include "tokenizer/vocab_merges.h"

#include <algorithm>
#include <vector>

#include "tokenizer/utf8.h"

namespace marlin::tok {

MergeTable merges_from_vocab(const Vocab& vocab, const std::function<double(int32_t)>& priority) {
  struct Candidate {
    double priority;
    uint32_t left_chars, right_chars;
    int32_t order;  // vocabulary order of the merged token's first occurrence
    int32_t left, right, merged;
  };
  std::vector<Candidate> candidates;
  candidates.reserve(static_cast<size_t>(vocab.size()) * 2);
  // first_of[last id of a text] = first id with that text.
  std::vector<int32_t> first_of(static_cast<size_t>(vocab.size()), -1);
  for (int32_t id = 0; id < vocab.size(); ++id) {
    auto owner = vocab.find(vocab.text(id));
    if (owner && first_of[static_cast<size_t>(*owner)] < 0) first_of[static_cast<size_t>(*owner)] = id;
  }
  std::vector<size_t> boundaries;
  std::vector<uint64_t> left_hashes, right_hashes;
  std::vector<std::pair<size_t, int32_t>> lefts;  // (boundary index, left token id)
  for (int32_t id = 0; id < vocab.size(); ++id) {
    std::string_view text = vocab.text(id);
    auto owner = vocab.find(text);
    if (!owner || first_of[static_cast<size_t>(*owner)] != id) continue;
    const int32_t merged = *owner;
    boundaries.clear();
    for (size_t pos = 0; pos < text.size();) {
      size_t n = utf8_sequence_length(text, pos);
      pos += n ? n : 1;
      if (pos < text.size()) boundaries.push_back(pos);
    }
    const uint32_t total_chars = static_cast<uint32_t>(boundaries.size() + 1);
    // Hash and prefetch every left part first, then every right part whose left part is a
    // token, so the table's cache misses overlap.
    left_hashes.clear();
    for (size_t cut : boundaries) {
      left_hashes.push_back(hash_bytes(text.substr(0, cut)));
      vocab.prefetch(left_hashes.back());
    }
    lefts.clear();
    right_hashes.clear();
    for (size_t b = 0; b < boundaries.size(); ++b) {
      auto left = vocab.find(text.substr(0, boundaries[b]), left_hashes[b]);
      if (!left) continue;
      lefts.emplace_back(b, *left);
      right_hashes.push_back(hash_bytes(text.substr(boundaries[b])));
      vocab.prefetch(right_hashes.back());
    }
    for (size_t k = 0; k < lefts.size(); ++k) {
      const auto [b, left] = lefts[k];
      auto right = vocab.find(text.substr(boundaries[b]), right_hashes[k]);
      if (!right) continue;
      uint32_t left_chars = static_cast<uint32_t>(b + 1);
      candidates.push_back({priority(merged), left_chars, total_chars - left_chars, id, left, *right, merged});
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
    if (a.right_chars != b.right_chars) return a.right_chars > b.right_chars;
    if (a.order != b.order) return a.order < b.order;
    return a.left != b.left ? a.left < b.left : a.right < b.right;
  });
  MergeTable merges;
  merges.reserve(candidates.size());
  for (size_t rank = 0; rank < candidates.size(); ++rank) {
    const auto& c = candidates[rank];
    merges.insert(c.left, c.right, {static_cast<int32_t>(rank), c.merged});
  }
  return merges;
}

}  // namespace marlin::tok
