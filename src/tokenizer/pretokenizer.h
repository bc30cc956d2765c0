// Pre-tokenizers of HF `tokenizers` (Split, ByteLevel, Digits, Metaspace, Sequence): they cut
// normalized text into the words the BPE model sees. Words are spans of one growing buffer so
// that a megabyte of text costs no allocation per word.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace marlin::tok {

struct Piece {
  uint32_t begin;
  uint32_t end;
  bool at_text_start;  // starts at offset 0 of the original input (Metaspace "first" scheme)
};

struct PieceBuffer {
  std::string text;  // pieces refer to [begin, end) of this; steps may append rewritten text
  std::vector<Piece> pieces;
  std::string_view view(const Piece& p) const { return std::string_view(text).substr(p.begin, p.end - p.begin); }
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  virtual void apply(PieceBuffer& buffer) const = 0;
};

// Split on a regex (Oniguruma syntax, translated for PCRE2) or a literal string.
std::unique_ptr<PreTokenizerStep> make_regex_split(std::string_view onig_pattern, SplitBehavior behavior,
                                                   bool invert);
std::unique_ptr<PreTokenizerStep> make_literal_split(std::string literal, SplitBehavior behavior, bool invert);
// Digits: every numeric character alone (individual) or runs of them.
std::unique_ptr<PreTokenizerStep> make_digits(bool individual);
// ByteLevel: optional prefix space, then (use_regex) the GPT-2 split. The bytes stay raw: the
// byte-level BPE model spells them itself.
std::unique_ptr<PreTokenizerStep> make_byte_level(bool add_prefix_space, bool use_regex);

enum class PrependScheme { kAlways, kFirst, kNever };
// Metaspace: spaces become `replacement`, which is prepended per `scheme`; optionally split
// before every replacement character.
std::unique_ptr<PreTokenizerStep> make_metaspace(std::string replacement, PrependScheme scheme, bool split);

// A sequence of steps; empty = the whole text is one word.
class PreTokenizer {
 public:
  void add(std::unique_ptr<PreTokenizerStep> step) { steps_.push_back(std::move(step)); }
  // Cuts buffer.pieces (each initially a whole normalized segment) into words.
  void apply(PieceBuffer& buffer) const {
    for (const auto& step : steps_) step->apply(buffer);
  }
  bool empty() const { return steps_.empty(); }

 private:
  std::vector<std::unique_ptr<PreTokenizerStep>> steps_;
};

// GPT-2's split pattern, used by ByteLevel(use_regex=true).
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace marlin::tok
