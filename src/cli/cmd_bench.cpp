// marlin bench: prefill and decode speed, measured like llama-bench (pp and tg from an empty
// context, random token ids, a warm-up run, then the median of several repetitions).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "runtime/engine.h"

namespace marlin::cli {
namespace {

struct BenchOptions {
  std::string model;
  int prompt_tokens = 512;
  int gen_tokens = 128;
  int threads = 0;
  std::string device = "cpu";
  int reps = 3;
  bool json = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

template <typename Fn>
double seconds(Fn&& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void bench(const BenchOptions& o) {
  Engine engine({resolve_model_path(o.model), o.threads, parse_device(o.device)});
  Model& model = engine.model();
  const int vocab = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::mt19937 rng(42);
  std::vector<int32_t> prompt(static_cast<size_t>(std::max(o.prompt_tokens, 1)));
  for (auto& t : prompt) t = int32_t(rng() % uint32_t(vocab));
  auto cache = model.new_cache(std::max(o.prompt_tokens, o.gen_tokens) + 1);

  auto prefill = [&] {
    cache->clear();
    model.forward(prompt, *cache, logits.data(), false);
  };
  auto decode = [&] {
    cache->clear();
    int32_t token = prompt[0];
    for (int i = 0; i < o.gen_tokens; ++i) {
      model.forward(std::span<const int32_t>(&token, 1), *cache, logits.data(), false);
      token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
  };
  std::vector<double> prefill_rates, decode_rates;
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    const double p = o.prompt_tokens > 0 ? seconds(prefill) : 0;
    const double d = o.gen_tokens > 0 ? seconds(decode) : 0;
    if (rep == 0) continue;
    if (o.prompt_tokens > 0) prefill_rates.push_back(o.prompt_tokens / p);
    if (o.gen_tokens > 0) decode_rates.push_back(o.gen_tokens / d);
  }
  const double prefill_rate = prefill_rates.empty() ? 0 : median(prefill_rates);
  const double decode_rate = decode_rates.empty() ? 0 : median(decode_rates);
  if (o.json) {
    nlohmann::json out = {{"model", model.config().name},
                          {"threads", engine.pool().size()},
                          {"prompt_tokens", o.prompt_tokens},
                          {"gen_tokens", o.gen_tokens},
                          {"reps", o.reps},
                          {"prefill_tokens_per_s", prefill_rate},
                          {"decode_tokens_per_s", decode_rate},
                          {"prefill_runs", prefill_rates},
                          {"decode_runs", decode_rates}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("model %s, %d threads, %d repetitions (median)\n", model.config().name.c_str(), engine.pool().size(),
                o.reps);
    std::printf("prefill %5d tokens: %8.1f tokens/s\n", o.prompt_tokens, prefill_rate);
    std::printf("decode  %5d tokens: %8.1f tokens/s\n", o.gen_tokens, decode_rate);
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  auto* c = app.add_subcommand("bench", "Measure prefill and decode speed (tokens/s)");
  c->add_option("-m,--model", options->model, "GGUF model file (default: the model scripts/setup.sh fetches)");
  c->add_option("-p,--prompt-tokens", options->prompt_tokens, "Prompt length for the prefill test")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 16));
  c->add_option("-g,--gen-tokens", options->gen_tokens, "Tokens to generate in the decode test")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 16));
  c->add_option("-t,--threads", options->threads, "Worker threads (default: one per core)")->check(CLI::Range(0, 1024));
  add_device_option(c, options->device);
  c->add_option("-r,--reps", options->reps, "Repetitions (after one warm-up run)")->capture_default_str()->check(CLI::Range(1, 1000));
  c->add_flag("--json", options->json, "Print one JSON object");
  c->callback([options] { bench(*options); });
}

}  // namespace marlin::cli
