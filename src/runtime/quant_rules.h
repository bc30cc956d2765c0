// Which format each tensor gets when a model is quantized: the user's rules first (first match
// wins), then the defaults — vectors (norms) and MoE routers stay as stored, embeddings and
// lm_head get 8 bits, every other matrix gets the requested format.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/format.h"

namespace marlin {

struct QuantRule {
  std::string pattern;                 // glob over the Hugging Face name (* and ?); without a
                                       // wildcard, a substring of the name
  std::optional<TensorFormat> format;  // nullopt: "keep" (leave the tensor as stored)
};

// "pattern=format[,pattern=format...]" (also newline-separated, '#' starts a comment), where
// format is a TensorFormat name or "keep". marlin::Error names the bad entry.
std::vector<QuantRule> parse_quant_rules(std::string_view text);

bool rule_matches(const QuantRule& rule, std::string_view name);

// The format `name` ends up in. `target` is the requested format for matrices (nullopt: keep
// everything as stored); `rows` = 1 marks a vector.
// nullopt means: keep as stored.
std::optional<TensorFormat> choose_format(std::string_view name, int64_t rows,
                                          const std::optional<TensorFormat>& target,
                                          const std::vector<QuantRule>& rules);

}  // namespace marlin
