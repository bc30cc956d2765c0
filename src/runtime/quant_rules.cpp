#include "runtime/quant_rules.h"

#include <fnmatch.h>

#include "core/error.h"

namespace marlin {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool is_embedding_or_head(std::string_view name) {
  return name == "model.embed_tokens.weight" || name == "lm_head.weight";
}

// The router of a sparse MLP (one row per expert): small, and its rounding would move tokens
// between experts.
bool is_moe_router(std::string_view name) {
  return name.ends_with(".mlp.gate.weight") || name.ends_with(".block_sparse_moe.gate.weight");
}

}  // namespace

std::vector<QuantRule> parse_quant_rules(std::string_view text) {
  std::vector<QuantRule> rules;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find_first_of(",\n", start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view entry = text.substr(start, end - start);
    if (const size_t hash = entry.find('#'); hash != std::string_view::npos) entry = entry.substr(0, hash);
    entry = trim(entry);
    start = end + 1;
    if (entry.empty()) continue;
    const size_t eq = entry.rfind('=');
    MARLIN_CHECK(eq != std::string_view::npos && eq > 0 && eq + 1 < entry.size(),
                 "rules: '{}' is not of the form pattern=format", entry);
    QuantRule rule{std::string(trim(entry.substr(0, eq))), std::nullopt};
    const std::string_view format = trim(entry.substr(eq + 1));
    if (format != "keep") rule.format = TensorFormat::parse(format);
    rules.push_back(std::move(rule));
  }
  return rules;
}

bool rule_matches(const QuantRule& rule, std::string_view name) {
  const std::string n(name);
  if (rule.pattern.find_first_of("*?[") == std::string::npos) return n.find(rule.pattern) != std::string::npos;
  return fnmatch(rule.pattern.c_str(), n.c_str(), 0) == 0;
}

std::optional<TensorFormat> choose_format(std::string_view name, int64_t rows,
                                          const std::optional<TensorFormat>& target,
                                          const std::vector<QuantRule>& rules) {
  for (const auto& rule : rules)
    if (rule_matches(rule, name)) return rule.format;
  if (!target || rows <= 1 || is_moe_router(name)) return std::nullopt;
  if (is_embedding_or_head(name)) {
    // 8 bits keep the vocabulary projections accurate; a target that is already 8 bits or more stays.
    if (target->kind == FormatKind::kInt8 || !target->quantized() || target->kind == FormatKind::kFp8E4M3)
      return target;
    return TensorFormat::parse("int8-g32");
  }
  return target;
}

}  // namespace marlin
