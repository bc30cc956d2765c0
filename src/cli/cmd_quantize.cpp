// marlin quantize: any model source (GGUF, Hugging Face folder incl. GPTQ/AWQ, .marlin) to a
// .marlin checkpoint in a chosen format, by RTN or GPTQ.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/memory_size.h"
#include "formats/marlin_writer.h"
#include "model/model_source.h"
#include "runtime/expert_bits_plan.h"
#include "runtime/hessian_budget.h"
#include "runtime/quantize_model.h"
#include "runtime/trellis_bits.h"
#include "tokenizer/tokenizer.h"

namespace marlin::cli {
namespace {

struct QuantizeCliOptions {
  std::string input, output;
  std::string format;
  int group_size = 0;
  double bits = 0;  // --format trellis: bits per weight
  std::string method = "rtn";
  std::string calibration;
  int calibration_samples = 32;
  int calibration_ctx = 512;
  std::string rules;
  double damp = 0.01;
  double shard_gb = 0;
  int threads = 0;
  std::string memory_budget;  // "" (a share of the free memory) or a size such as 8G
  std::string moe_bits;  // "", "auto" or a width
  int min_bits = 2, max_bits = 8;
  double target_bits = 0;
  bool min_bits_given = false, max_bits_given = false, target_bits_given = false;
};

// --moe-bits and its companions, checked against each other.
std::optional<ExpertBitsOptions> expert_bits_options(const QuantizeCliOptions& o) {
  if (o.moe_bits.empty()) {
    MARLIN_CHECK(!o.min_bits_given && !o.max_bits_given && !o.target_bits_given,
                 "--min-bits, --max-bits and --target-bits need --moe-bits auto");
    return std::nullopt;
  }
  ExpertBitsOptions out;
  out.group_size = o.group_size;
  if (o.moe_bits == "auto") {
    MARLIN_CHECK(o.target_bits_given, "--moe-bits auto needs --target-bits (the average bits per expert weight)");
    out.min_bits = o.min_bits, out.max_bits = o.max_bits, out.target_bits = o.target_bits;
    return out;
  }
  MARLIN_CHECK(!o.min_bits_given && !o.max_bits_given && !o.target_bits_given,
               "--min-bits, --max-bits and --target-bits apply to --moe-bits auto only, not --moe-bits {}",
               o.moe_bits);
  MARLIN_CHECK(o.moe_bits == "2" || o.moe_bits == "3" || o.moe_bits == "4" || o.moe_bits == "8",
               "--moe-bits must be auto, 2, 3, 4 or 8, got '{}'", o.moe_bits);
  out.bits = std::stoi(o.moe_bits);
  return out;
}

// "int4" + --group-size 128 -> "int4-g128"; a name that already says its group is taken as is.
TensorFormat target_format(const QuantizeCliOptions& o) {
  std::string name = o.format;
  MARLIN_CHECK(o.bits == 0 || name == "trellis", "--bits goes with --format trellis, not '{}'", name);
  if (name == "trellis") {
    MARLIN_CHECK(o.bits > 0, "--format trellis needs --bits (1 to 8)");
    MARLIN_CHECK(o.group_size == 0, "--group-size does not apply to trellis (one scale per row)");
    // A fractional average: this is the width of what the per-tensor plan does not cover.
    return TensorFormat::parse("trellis" + std::to_string(int(std::floor(o.bits))));
  }
  const bool has_group = name.find("-g") != std::string::npos || name.find("-pc") != std::string::npos;
  if (o.group_size > 0) {
    MARLIN_CHECK(!has_group, "--group-size {} conflicts with the group in --format {}", o.group_size, name);
    name += "-g" + std::to_string(o.group_size);
  } else if (!has_group) {
    // Formats with a prescribed group (mxfp4, nvfp4) and plain ones parse without one.
    try {
      return TensorFormat::parse(name);
    } catch (const Error&) {
      name += "-g128";
    }
  }
  return TensorFormat::parse(name);
}

// Calibration sequences: the text cut into `samples` runs of `ctx` tokens spread over it.
std::vector<std::vector<int32_t>> calibration_sequences(const ModelSource& source, const QuantizeCliOptions& o) {
  const std::string path = o.calibration.empty() ? repository_file("tests/fixtures/corpus/calibration.txt") : o.calibration;
  auto tokenizer = source.tokenizer();
  auto tokens = tokenizer->encode(read_text_file(path), /*add_special=*/false, /*parse_special=*/false);
  const size_t ctx = size_t(o.calibration_ctx);
  MARLIN_CHECK(tokens.size() >= ctx, "calibration text '{}' has {} tokens, fewer than --calibration-ctx {}", path,
               tokens.size(), ctx);
  const size_t available = tokens.size() / ctx, samples = std::min(available, size_t(o.calibration_samples));
  std::vector<std::vector<int32_t>> out;
  for (size_t s = 0; s < samples; ++s) {
    const size_t start = (s * available / samples) * ctx;
    out.emplace_back(tokens.begin() + ptrdiff_t(start), tokens.begin() + ptrdiff_t(start + ctx));
    if (tokenizer->add_bos() && tokenizer->bos_id()) out.back()[0] = *tokenizer->bos_id();
  }
  return out;
}

void quantize(const QuantizeCliOptions& o) {
  MARLIN_CHECK(o.output.ends_with(".marlin"), "the output '{}' must end in .marlin", o.output);
  MARLIN_CHECK(o.method == "rtn" || o.method == "gptq", "--method must be rtn or gptq, got '{}'", o.method);
  const auto expert_bits = expert_bits_options(o);
  auto source = open_model_source(resolve_model_path(o.input));
  ThreadPool pool(o.threads);

  QuantizeOptions options;
  if (o.format != "keep") options.format = target_format(o);
  options.gptq = o.method == "gptq";
  options.gptq_options.percdamp = o.damp;
  if (!o.rules.empty())
    options.rules = parse_quant_rules(o.rules[0] == '@' ? read_text_file(o.rules.substr(1)) : o.rules);
  MARLIN_CHECK(options.gptq || !options.format || !options.format->act_order,
               "act-order ({}) needs --method gptq", options.format ? options.format->name() : "");
  if (options.gptq) MARLIN_CHECK(options.format.has_value(), "--method gptq needs a --format to quantize to");
  MARLIN_CHECK(options.gptq || o.memory_budget.empty(), "--memory-budget applies to --method gptq only");
  if (!o.memory_budget.empty()) options.hessian_budget = parse_memory_size(o.memory_budget);
  if (options.gptq || (expert_bits && expert_bits->bits == 0)) options.calibration = calibration_sequences(*source, o);
  std::optional<ExpertBitsPlan> plan;
  if (expert_bits) {
    plan = plan_expert_bits(*source, options.format, options.rules, options.calibration, *expert_bits, pool);
    options.tensor_formats = expert_tensor_formats(*plan);
  }
  if (o.bits != std::floor(o.bits)) {  // --format trellis --bits 2.5: a width per tensor
    MARLIN_CHECK(!expert_bits, "--moe-bits and a fractional --bits do not combine");
    if (options.calibration.empty()) options.calibration = calibration_sequences(*source, o);
    const int low = o.bits < 2 ? 1 : 2;
    std::optional<ProgressBar> trials;
    const auto show_trials = [&](int64_t done, int64_t total) {
      if (!trials) trials.emplace("sensitivity", total);
      trials->update(done);
    };
    // The trials are forward passes of the whole model, one per linear: on a GPU where there is one.
    const DeviceKind trial_device = cuda_device_present() ? DeviceKind::kCuda : DeviceKind::kCpu;
    const auto widths =
        plan_trellis_bits(*source, options.rules, options.calibration, o.bits, low, 8, pool, show_trials, trial_device);
    if (trials) trials->finish();
    options.tensor_formats = widths.formats;
    const std::string measure =
        !widths.by_trial ? "output error" : std::string("trial on ") + device_name(widths.trial_device);
    std::printf("trellis bits (target %.3f, widths %d-8, by %s): average %.3f over %zu tensors:", o.bits, low,
                measure.c_str(), widths.average_bits, widths.formats.size());
    for (const auto& [k, count] : widths.tensors_per_width) std::printf(" %d trellis%d", count, k);
    std::printf("\n");
  }

  MarlinCheckpointInfo info;
  info.config = source->hf_config();
  info.config.erase("quantization_config");  // the weights are marlin's own now
  info.config.erase(kExpertBitsConfigKey);
  if (plan) info.config[kExpertBitsConfigKey] = expert_bits_json(*plan);
  info.tokenizer_json = source->tokenizer_json();
  info.tokenizer_config_json = source->tokenizer_config_json();
  info.chat_template = source->chat_template();
  info.rope_freq_factors = source->config().rope.freq_factors;  // quantize_model writes Hugging Face Q/K rows
  // Those pair half-split, except MLA models' (DeepSeek, GLM), whose rows stay as stored.
  if (source->config().mla.enabled()) info.rope_pairing = source->config().rope.pairing;
  const auto names = source->tensor_names();
  MarlinWriter writer(o.output, std::move(info),
                      {.max_shard_bytes = uint64_t(o.shard_gb * 1e9), .expected_tensors = names.size()});

  ProgressBar bar("quantize", int64_t(names.size()));
  auto report = quantize_model(
      *source, options, pool, [&](const std::string& name, const QuantTensor& t) { writer.add(name, t); },
      [&](int64_t done, int64_t) { bar.update(done); }, [&](const std::string& text) { bar.message(text); });
  const auto files = writer.finish();
  bar.finish();

  std::map<std::string, int> by_format;
  for (const auto& t : report.tensors) by_format[t.format.name()]++;
  uint64_t bytes = 0;
  for (const auto& f : files) bytes += std::filesystem::file_size(f);
  std::printf("wrote %s (%zu file%s, %.1f MB) in %.1f s:", o.output.c_str(), files.size(), files.size() == 1 ? "" : "s",
              double(bytes) / 1e6, report.seconds);
  for (const auto& [format, count] : by_format) std::printf(" %d %s", count, format.c_str());
  std::printf("\n");
  if (plan) std::printf("%s", expert_bits_summary(expert_bits_json(*plan)).c_str());
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  auto* c = app.add_subcommand("quantize", "Quantize a model (GGUF, Hugging Face folder, GPTQ/AWQ, .marlin) to a .marlin checkpoint");
  c->add_option("input", o->input, "The model to quantize (default: the model scripts/setup.sh fetches)")->required();
  c->add_option("output", o->output, "The .marlin checkpoint to write")->required();
  c->add_option("-f,--format", o->format,
                "Weight format for the linear layers: int8, int4, int3, int2 (with -asym/-act/-24 options), fp8, "
                "fp4, mxfp4, nvfp4, f16, bf16, trellis (with --bits; or trellis1..trellis8), a full name like "
                "int4-g128-asym, or 'keep' to convert without requantizing")
      ->required();
  c->add_option("--bits", o->bits,
                "--format trellis: bits per weight, 1 to 8 (trellis-coded: Hadamard rotations, then 16x16 tiles "
                "searched by Viterbi; with --method gptq each layer's error is fed back through its calibration "
                "Hessian (LDLQ). The search runs on the GPU where one is present (MARLIN_TRELLIS_GPU_SEARCH=0: on "
                "the CPU, same result), else on the CPU: tens of thousands of weights per second per core). A fractional "
                "average (2.5; 3.99 for about 4) gives each linear of the blocks a whole width from 2 to 8 (1 below 2) "
                "by its sensitivity: on dense models the KL of the model's output when that linear alone carries "
                "2-bit-sized noise (one forward pass per linear over 512 calibration tokens, on the GPU where one "
                "is present), on mixture-of-"
                "experts models the linear's own expected output error (one pass of the model); the plan is "
                "printed and visible in marlin inspect")
      ->check(CLI::Range(1.0, 8.0));
  c->add_option("-g,--group-size", o->group_size, "Values per scale (32, 64, 128; default 128 where the format needs one)")
      ->check(CLI::IsMember({32, 64, 128}));
  c->add_option("-m,--method", o->method, "rtn (round to nearest) or gptq (calibrated, lower error)")->capture_default_str();
  c->add_option("--calibration", o->calibration,
                "Text for GPTQ's calibration and --moe-bits auto's sensitivity (default: the repository's "
                "calibration text)");
  c->add_option("--calibration-samples", o->calibration_samples, "Calibration sequences")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  c->add_option("--calibration-ctx", o->calibration_ctx, "Tokens per calibration sequence")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 16));
  c->add_option("--rules", o->rules,
                "Per-tensor formats, first match wins: 'pattern=format,...' (glob or substring of the Hugging Face "
                "name; format 'keep' leaves a tensor as stored), or @FILE with one rule per line");
  c->add_option("--damp", o->damp, "GPTQ dampening, relative to the mean Hessian diagonal")
      ->capture_default_str()
      ->check(CLI::Range(1e-6, 10.0));
  c->add_option("--shard-size", o->shard_gb, "Split the checkpoint into files of at most this many GB (0: one file)")
      ->check(CLI::Range(0.0, 1e6));
  c->add_option("--moe-bits", o->moe_bits,
                "Mixture-of-experts models: the experts' widths. N (2, 3, 4 or 8): every expert's gate/up/down "
                "at intN; auto: each expert's width chosen from the integer widths in [--min-bits, --max-bits] "
                "(2 -> int2, 3 -> int3, 4 -> int4, 8 -> int8, with the group size and zero points of --format "
                "when it is an integer format, else --group-size or 128) to minimize the experts' summed output "
                "error under --target-bits. The error of an expert at a width is measured on the calibration "
                "text with round-to-nearest trial quantizations (whatever --method; the final pass uses "
                "--method): mean squared change of router weight x expert output over the tokens routed to it "
                "(at most 256 sampled), times its routing frequency. Experts no calibration token chose get the "
                "lowest width. The choice is printed and stored in the checkpoint (marlin inspect shows it); "
                "--rules may not match expert tensors");
  c->add_option("--min-bits", o->min_bits, "--moe-bits auto: the lowest expert width")
      ->capture_default_str()
      ->check(CLI::Range(2, 8))
      ->each([o](const std::string&) { o->min_bits_given = true; });
  c->add_option("--max-bits", o->max_bits, "--moe-bits auto: the highest expert width")
      ->capture_default_str()
      ->check(CLI::Range(2, 8))
      ->each([o](const std::string&) { o->max_bits_given = true; });
  c->add_option("--target-bits", o->target_bits,
                "--moe-bits auto (required): average bits per expert weight over every expert of every sparse "
                "layer, weighted by parameter count (code bits; scales not counted); between the lowest and "
                "highest candidate widths")
      ->check(CLI::Range(2.0, 8.0))
      ->each([o](const std::string&) { o->target_bits_given = true; });
  c->add_option("--memory-budget", o->memory_budget,
                fmt::format("--method gptq: memory for the Hessians of one block at a time (one cols x cols matrix "
                            "of doubles per linear group: gigabytes for many experts or wide layers), e.g. 512M, 8G, "
                            "1.5G (K, M, G, T: powers of 1024). A block needing more runs the calibration text "
                            "through it several times, each pass collecting the Hessians of the groups that fit, "
                            "with the same result. Default: {:.0f}% of the memory the kernel reports available "
                            "(MemAvailable) when GPTQ starts; no limit where that is unknown",
                            kHessianBudgetShare * 100))
      ->type_name("SIZE")
      ->check([](const std::string& text) {
        try {
          parse_memory_size(text);
          return std::string();
        } catch (const Error& e) {
          return std::string(e.what());
        }
      });
  c->add_option("-t,--threads", o->threads, "Worker threads (default: one per core)")->check(CLI::Range(0, 1024));
  c->callback([o] { quantize(*o); });
}

}  // namespace marlin::cli
