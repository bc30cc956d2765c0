// The normalizers SentencePiece-style tokenizer.json files use: Replace (literal or regex),
// Prepend, and Sequence of them. Anything else is rejected by the loader.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace marlin::tok {

class Normalizer {
 public:
  void add_replace(std::string from, std::string to);
  void add_regex_replace(std::string_view onig_pattern, std::string to);
  void add_prepend(std::string prefix);

  bool empty() const { return steps_.empty(); }
  // Normalizes one segment of text (valid UTF-8) in place.
  void apply(std::string& text) const;

 private:
  struct Step {
    enum class Kind { kReplace, kRegexReplace, kPrepend } kind;
    std::string from, to;
    std::shared_ptr<Regex> regex;
  };
  std::vector<Step> steps_;
};

}  // namespace marlin::tok
