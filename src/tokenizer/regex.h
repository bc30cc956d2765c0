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

// Rewrites an Oniguruma pattern (what HF uses) so PCRE2 matches the same characters: \s and \S
// become Unicode White_Space (PCRE2 with UCP also counts U+180E), and \p{X} gains the members
// HF's newer Unicode tables have that PCRE2's lack (onig_unicode_classes.inc). \S inside a
// character class and \P{X} are passed through unchanged.
std::string translate_onig_pattern(std::string_view pattern);

// Class ranges ("\x{..}-\x{..}...") to add to PCRE2's \p{name} to match HF; name is an
// Oniguruma class (L, N, M, Lu, Ll, Lt, Lm, Lo) or Numeric (Rust's char::is_numeric, over \p{N}).
std::string onig_class_supplement(std::string_view name);

}  // namespace marlin::tok
