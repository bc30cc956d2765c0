#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>
#include <mutex>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace marlin::tok {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

namespace {

// Only the whole match is read, so one small match-data block per thread serves every pattern.
struct MatchData {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(data); }
};

pcre2_match_data* thread_match_data() {
  thread_local MatchData md;
  MARLIN_CHECK(md.data != nullptr, "tokenizer: out of memory for regex match data");
  return md.data;
}

}  // namespace

Regex::Regex(std::string pattern) : pattern_(std::move(pattern)), impl_(std::make_unique<Impl>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    fail("tokenizer: invalid split regex at offset {}: {} (pattern {})", offset,
         reinterpret_cast<const char*>(message), pattern_);
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const {
  pcre2_match_data* md = thread_match_data();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), start, 0, md, nullptr)
                        : pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    MARLIN_CHECK(rc >= 0, "tokenizer: regex match failed with PCRE2 error {} (pattern {})", rc, pattern_);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    matches.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      start = ov[1];
    } else {
      if (ov[1] >= text.size()) return;
      size_t n = utf8_sequence_length(text, ov[1]);
      start = ov[1] + (n ? n : 1);
    }
  }
}

namespace {

struct OnigClass {
  std::string_view name;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
};

#define ONIG_CLASS(name, ...) OnigClass{name, {__VA_ARGS__}},
const std::vector<OnigClass>& onig_classes() {
  static const std::vector<OnigClass> classes = {
#include "tokenizer/onig_unicode_classes.inc"
  };
  return classes;
}
#undef ONIG_CLASS

// Unicode White_Space, which is \s to Oniguruma (PCRE2 with UCP also counts U+180E).
constexpr std::string_view kWhiteSpace =
    R"(\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// The members of an Oniguruma class that PCRE2's \p{base} misses, as class ranges ("" if none).
std::string compute_supplement(const OnigClass& cls, std::string_view base) {
  std::string all;
  std::vector<uint32_t> code_points;
  for (const auto& [first, last] : cls.ranges) {
    for (uint32_t cp = first; cp <= last; ++cp) {
      utf8_append(all, cp);
      code_points.push_back(cp);
    }
  }
  Regex property(fmt::format("\\p{{{}}}", base));
  std::vector<std::pair<size_t, size_t>> matches;
  property.find_all(all, matches);
  std::string out;
  size_t match = 0, offset = 0;
  std::vector<uint32_t> missing;
  for (uint32_t cp : code_points) {
    while (match < matches.size() && matches[match].second <= offset) ++match;
    bool covered = match < matches.size() && matches[match].first <= offset;
    if (!covered) missing.push_back(cp);
    offset += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  for (size_t i = 0; i < missing.size();) {
    size_t j = i;
    while (j + 1 < missing.size() && missing[j + 1] == missing[j] + 1) ++j;
    out += fmt::format("\\x{{{:X}}}", missing[i]);
    if (j > i) out += fmt::format("-\\x{{{:X}}}", missing[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace

std::string onig_class_supplement(std::string_view name) {
  static std::mutex mutex;
  static std::map<std::string, std::string, std::less<>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  std::string supplement;
  for (const auto& cls : onig_classes()) {
    if (cls.name == name) supplement = compute_supplement(cls, name == "Numeric" ? "N" : name);
  }
  cache.emplace(std::string(name), supplement);
  return supplement;
}

std::string translate_onig_pattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char e = pattern[++i];
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : fmt::format("[{}]", kWhiteSpace);
      } else if (e == 'S' && !in_class) {
        out += fmt::format("[^{}]", kWhiteSpace);
      } else if (e == 'p' && i + 1 < pattern.size() && pattern[i + 1] == '{') {
        size_t close = pattern.find('}', i);
        if (close == std::string_view::npos) {
          out += "\\p";
          continue;
        }
        std::string_view name = pattern.substr(i + 2, close - i - 2);
        std::string property = fmt::format("\\p{{{}}}", name);
        std::string supplement = onig_class_supplement(name);
        if (supplement.empty()) out += property;
        else if (in_class) out += property + supplement;
        else out += "[" + property + supplement + "]";
        i = close;
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace marlin::tok
