#include "runtime/expert_bits_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "model/model.h"
#include "runtime/expert_bits.h"
#include "runtime/expert_sensitivity.h"

namespace marlin {
namespace {

std::vector<ExpertBitsChoice> find_experts(const Model& model) {
  const ModelConfig& c = model.config();
  std::vector<ExpertBitsChoice> out;
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const auto groups = model.sparse_mlp_groups(layer);
    if (!groups) continue;
    for (size_t e = 0; e < groups->experts.size(); ++e) {
      ExpertBitsChoice x;
      x.layer = layer, x.expert = int(e), x.names = groups->experts[e];
      x.params = 3 * int64_t(c.moe.d_expert_ffn) * c.d_model;
      out.push_back(std::move(x));
    }
  }
  MARLIN_CHECK(!out.empty(), "--moe-bits: {} has no mixture-of-experts layers", c.architecture);
  return out;
}

void check_rules_leave_experts(const std::vector<QuantRule>& rules, const std::vector<ExpertBitsChoice>& experts) {
  for (const auto& rule : rules)
    for (const auto& x : experts)
      for (const auto& name : x.names)
        MARLIN_CHECK(!rule_matches(rule, name),
                     "--rules pattern '{}' matches the expert tensor '{}'; with --moe-bits the experts' formats "
                     "come from --moe-bits",
                     rule.pattern, name);
}

}  // namespace

ExpertBitsPlan plan_expert_bits(const ModelSource& source, const std::optional<TensorFormat>& base,
                                const std::vector<QuantRule>& rules,
                                const std::vector<std::vector<int32_t>>& calibration,
                                const ExpertBitsOptions& options, ThreadPool& pool) {
  ExpertBitsPlan plan;
  plan.automatic = options.bits == 0;
  if (plan.automatic) {
    check_expert_bits_range(options.min_bits, options.max_bits, options.target_bits);
    plan.min_bits = options.min_bits, plan.max_bits = options.max_bits, plan.target_bits = options.target_bits;
    plan.widths = expert_bit_widths(options.min_bits, options.max_bits);
  } else {
    plan.widths = {options.bits};
    plan.min_bits = plan.max_bits = options.bits;
    plan.target_bits = options.bits;
  }
  for (const int b : plan.widths) plan.formats.push_back(expert_width_format(b, base, options.group_size));

  auto model = load_model(source, pool);
  plan.experts = find_experts(*model);
  check_rules_leave_experts(rules, plan.experts);
  std::vector<ExpertCost> costs;
  if (plan.automatic) {
    MARLIN_CHECK(!calibration.empty(), "--moe-bits auto needs calibration text");
    for (const auto& tokens : calibration) plan.calibration_tokens += int64_t(tokens.size());
    const auto measured =
        measure_expert_sensitivity(*model, source, calibration, {plan.formats, options.max_rows}, pool);
    MARLIN_CHECK(measured.size() == plan.experts.size(), "moe bits: measured {} experts of {}", measured.size(),
                 plan.experts.size());
    for (size_t i = 0; i < measured.size(); ++i) {
      plan.experts[i].frequency = measured[i].frequency;
      plan.experts[i].error = measured[i].error;
      costs.push_back({plan.experts[i].params, measured[i].error});
    }
  } else {
    for (const auto& x : plan.experts) costs.push_back({x.params, std::vector<double>{0.0}});
  }
  const auto allocation = allocate_expert_bits(costs, plan.widths, plan.target_bits);
  plan.average_bits = allocation.average_bits;
  plan.error = allocation.error;
  for (size_t i = 0; i < plan.experts.size(); ++i) {
    plan.experts[i].bits = plan.widths[size_t(allocation.choice[i])];
    plan.error_at_min_bits += costs[i].error.front();
  }
  return plan;
}

std::map<std::string, TensorFormat> expert_tensor_formats(const ExpertBitsPlan& plan) {
  std::map<std::string, TensorFormat> out;
  for (const auto& x : plan.experts) {
    const auto at = std::find(plan.widths.begin(), plan.widths.end(), x.bits);
    MARLIN_CHECK(at != plan.widths.end(), "moe bits: expert width {} is not a candidate", x.bits);
    for (const auto& name : x.names) out.emplace(name, plan.formats[size_t(at - plan.widths.begin())]);
  }
  return out;
}

nlohmann::ordered_json expert_bits_json(const ExpertBitsPlan& plan) {
  nlohmann::ordered_json j;
  j["mode"] = plan.automatic ? "auto" : "uniform";
  j["min_bits"] = plan.min_bits;
  j["max_bits"] = plan.max_bits;
  j["target_bits"] = plan.target_bits;
  j["average_bits"] = plan.average_bits;
  if (plan.automatic) {
    j["sensitivity"] = "rtn";
    j["calibration_tokens"] = plan.calibration_tokens;
    j["error"] = plan.error;
    j["error_at_min_bits"] = plan.error_at_min_bits;
  }
  nlohmann::ordered_json formats, counts, layers;
  for (size_t i = 0; i < plan.widths.size(); ++i) {
    const std::string w = std::to_string(plan.widths[i]);
    formats[w] = plan.formats[i].name();
    counts[w] = std::count_if(plan.experts.begin(), plan.experts.end(),
                              [&](const ExpertBitsChoice& x) { return x.bits == plan.widths[i]; });
  }
  for (const auto& x : plan.experts) layers[std::to_string(x.layer)].push_back(x.bits);
  j["formats"] = formats;
  j["experts_per_width"] = counts;
  j["layers"] = layers;
  return j;
}

std::string expert_bits_summary(const nlohmann::json& j) {
  std::string out;
  const bool automatic = j.value("mode", "") == "auto";
  out += fmt::format("expert bits ({}", j.value("mode", "?"));
  if (automatic)
    out += fmt::format(": target {:.3f}, widths {}-{}, sensitivity by {} on {} calibration tokens",
                       j.value("target_bits", 0.0), j.value("min_bits", 0), j.value("max_bits", 0),
                       j.value("sensitivity", "?"), j.value("calibration_tokens", 0));
  out += ")\n  formats:";
  for (const auto& [w, f] : j.at("formats").items()) out += fmt::format(" {} bits = {};", w, f.get<std::string>());
  out.back() = '\n';
  int64_t experts = 0;
  out += "  experts per width:";
  for (const auto& [w, n] : j.at("experts_per_width").items()) {
    out += fmt::format(" {} bits: {};", w, n.get<int64_t>());
    experts += n.get<int64_t>();
  }
  out.back() = '\n';
  out += fmt::format("  {} experts, average {:.3f} bits per expert weight\n", experts, j.value("average_bits", 0.0));
  for (const auto& [layer, widths] : j.at("layers").items()) {
    std::map<int, int> by_width;
    double sum = 0;
    for (const auto& b : widths) ++by_width[b.get<int>()], sum += b.get<int>();
    out += fmt::format("  layer {:>3}:", layer);
    for (const auto& [w, n] : by_width) out += fmt::format(" {}x{}b", n, w);
    out += fmt::format("  (mean {:.2f})  [", widths.empty() ? 0.0 : sum / double(widths.size()));
    for (size_t i = 0; i < widths.size(); ++i) out += fmt::format("{}{}", i ? " " : "", widths[i].get<int>());
    out += "]\n";
  }
  if (automatic)
    out += fmt::format("  summed expert output error {:.4g} (every expert at {} bits: {:.4g})\n", j.value("error", 0.0),
                       j.at("formats").begin().key(), j.value("error_at_min_bits", 0.0));
  return out;
}

}  // namespace marlin
