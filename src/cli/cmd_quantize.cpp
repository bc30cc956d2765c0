// marlin quantize: any model source (GGUF, Hugging Face folder incl. GPTQ/AWQ, .marlin) to a
// .marlin checkpoint in a chosen format, by RTN or GPTQ.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "formats/marlin_writer.h"
#include "model/model_source.h"
#include "runtime/quantize_model.h"
#include "tokenizer/tokenizer.h"

namespace marlin::cli {
namespace {

struct QuantizeCliOptions {
  std::string input, output;
  std::string format;
  int group_size = 0;
  std::string method = "rtn";
  std::string calibration;
  int calibration_samples = 32;
  int calibration_ctx = 512;
  std::string rules;
  double damp = 0.01;
  double shard_gb = 0;
  int threads = 0;
};

// "int4" + --group-size 128 -> "int4-g128"; a name that already says its group is taken as is.
TensorFormat target_format(const QuantizeCliOptions& o) {
  std::string name = o.format;
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
  if (options.gptq) {
    MARLIN_CHECK(options.format.has_value(), "--method gptq needs a --format to quantize to");
    options.calibration = calibration_sequences(*source, o);
  }

  MarlinCheckpointInfo info;
  info.config = source->hf_config();
  info.config.erase("quantization_config");  // the weights are marlin's own now
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
      [&](int64_t done, int64_t) { bar.update(done); });
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
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCliOptions>();
  auto* c = app.add_subcommand("quantize", "Quantize a model (GGUF, Hugging Face folder, GPTQ/AWQ, .marlin) to a .marlin checkpoint");
  c->add_option("input", o->input, "The model to quantize (default: the model scripts/setup.sh fetches)")->required();
  c->add_option("output", o->output, "The .marlin checkpoint to write")->required();
  c->add_option("-f,--format", o->format,
                "Weight format for the linear layers: int8, int4, int3, int2 (with -asym/-act/-24 options), fp8, "
                "fp4, mxfp4, nvfp4, f16, bf16, a full name like int4-g128-asym, or 'keep' to convert without "
                "requantizing")
      ->required();
  c->add_option("-g,--group-size", o->group_size, "Values per scale (32, 64, 128; default 128 where the format needs one)")
      ->check(CLI::IsMember({32, 64, 128}));
  c->add_option("-m,--method", o->method, "rtn (round to nearest) or gptq (calibrated, lower error)")->capture_default_str();
  c->add_option("--calibration", o->calibration, "Text for GPTQ's calibration (default: the repository's calibration text)");
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
  c->add_option("-t,--threads", o->threads, "Worker threads (default: one per core)")->check(CLI::Range(0, 1024));
  c->callback([o] { quantize(*o); });
}

}  // namespace marlin::cli
