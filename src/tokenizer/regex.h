// PCRE2 (8-bit, UTF + UCP so \p{L}, \s, \w use Unicode properties; JIT-compiled where the
// library supports it) for the pre-tokenizer split patterns.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace marlin::tok {

class Regex {
 public:
  // Throws marlin::Error with PCRE2's message and the offset when the pattern is invalid.
  explicit Regex(std::string pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches [begin, end) in `text` (valid UTF-8), left to right. An empty match
  // is reported and the search resumes one character later, as Oniguruma's iterator does.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

// Oniguruma (which HF uses) counts U+0085 NEXT LINE as \s; PCRE2 with UCP does not. Rewrites
// \s and \S (outside and inside character classes) so both engines agree.
std::string translate_onig_pattern(std::string_view pattern);

}  // namespace marlin::tok
