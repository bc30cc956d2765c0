// The BPE model of HF `tokenizers` (models/bpe): a word is cut into characters (or, for
// byte-level vocabularies, bytes), then adjacent pairs are merged lowest rank first, leftmost
// first among equals, exactly as HF's priority-queue merge loop does.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace marlin::tok {

struct BpeOptions {
  // Words arrive as raw bytes and start as one symbol per byte (the token that spells the byte
  // in GPT-2's alphabet). Otherwise they start as one symbol per UTF-8 character.
  bool byte_level = false;
  bool byte_fallback = false;         // unknown characters become <0xNN> tokens
  std::optional<int32_t> unk_id;      // unknown characters become this token (if no fallback)
  bool fuse_unk = false;              // consecutive unknowns become one unk token
  bool ignore_merges = false;         // a word that is itself a token is emitted whole
};

class BpeModel {
 public:
  BpeModel(Vocab vocab, MergeTable merges, BpeOptions options);

  // Appends the ids of one pre-tokenized word (never empty).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const Vocab& vocab() const { return vocab_; }
  const BpeOptions& options() const { return options_; }
  const MergeTable& merges() const { return merges_; }

 private:
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids) const;
  void merge(std::vector<int32_t>& ids, std::vector<int32_t>& out) const;

  Vocab vocab_;
  MergeTable merges_;
  BpeOptions options_;
  std::array<int32_t, 256> byte_symbol_{};    // byte-level: id of the token spelling each byte
  std::array<int32_t, 256> fallback_token_{};  // id of "<0xNN>", -1 when missing
  std::array<int32_t, 128> ascii_symbol_{};    // character mode: id of each ASCII character, -1 when missing

  // Recently seen words (HF keeps a cache too); bounded, cleared when full.
  static constexpr size_t kCacheCapacity = 20000;
  static constexpr size_t kCacheMaxWordBytes = 64;
  mutable std::mutex cache_mutex_;
  struct WordHash {
    using is_transparent = void;
    size_t operator()(std::string_view word) const { return hash_bytes(word); }
  };
  mutable std::unordered_map<std::string, std::vector<int32_t>, WordHash, std::equal_to<>> cache_;
};

}  // namespace marlin::tok
