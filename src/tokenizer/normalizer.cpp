#include "tokenizer/normalizer.h"

namespace marlin::tok {

void Normalizer::add_replace(std::string from, std::string to) {
  steps_.push_back({Step::Kind::kReplace, std::move(from), std::move(to), nullptr});
}

void Normalizer::add_regex_replace(std::string_view onig_pattern, std::string to) {
  steps_.push_back({Step::Kind::kRegexReplace, {}, std::move(to), std::make_shared<Regex>(translate_onig_pattern(onig_pattern))});
}

void Normalizer::add_prepend(std::string prefix) {
  steps_.push_back({Step::Kind::kPrepend, {}, std::move(prefix), nullptr});
}

void Normalizer::apply(std::string& text) const {
  std::string out;
  std::vector<std::pair<size_t, size_t>> matches;
  for (const auto& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kPrepend:
        if (!text.empty()) text.insert(0, step.to);  // HF prepends only to non-empty text
        continue;
      case Step::Kind::kReplace:
        matches.clear();
        if (!step.from.empty()) {
          for (size_t at = text.find(step.from); at != std::string::npos; at = text.find(step.from, at + step.from.size())) {
            matches.emplace_back(at, at + step.from.size());
          }
        }
        break;
      case Step::Kind::kRegexReplace:
        matches.clear();
        step.regex->find_all(text, matches);
        break;
    }
    if (matches.empty()) continue;
    out.clear();
    size_t prev = 0;
    for (const auto& [b, e] : matches) {
      out.append(text, prev, b - prev);
      out += step.to;
      prev = e;
    }
    out.append(text, prev, std::string::npos);
    text.swap(out);
  }
}

}  // namespace marlin::tok
