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
#include "model/model_source.h"
#include "model/synthetic_source.h"
#include "runtime/engine.h"

namespace marlin::cli {
namespace {

struct BenchOptions {
  std::string model;
  int prompt_tokens = 512;
  int gen_tokens = 128;
  int threads = 0;
  std::string device = "cpu";
  std::string synthetic;  // a synthetic_source shape instead of a model file
  std::string format = "int4-g128";
  int reps = 3;
  std::vector<int> batches = {1};  // sequences decoded together, one decode test each
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

// Bytes of weights one token reads: every linear layer and norm, one embedding row (the whole
// table again when it is also the output projection, tied), and of each sparse MLP the top_k
// experts it is routed to (top_k / n_experts of the routed experts' bytes; shared experts,
// "mlp.shared_experts.", run for every token and count whole).
double weight_bytes_per_token(const ModelSource& source) {
  const MoeConfig& moe = source.config().moe;
  const double expert_share = moe.n_experts > 0 ? double(moe.routing.top_k) / moe.n_experts : 1.0;
  const bool tied = !source.tensor("lm_head.weight").has_value();
  double bytes = 0;
  for (const std::string& name : source.tensor_names()) {
    const QuantTensor t = *source.tensor(name);
    const double stored = double(t.stored_bytes());
    if (name == "model.embed_tokens.weight") {
      bytes += stored / double(t.rows) + (tied ? stored : 0.0);
    } else if (name.find(".mlp.experts.") != std::string::npos || name.find(".block_sparse_moe.experts.") != std::string::npos) {
      bytes += stored * expert_share;
    } else {
      bytes += stored;
    }
  }
  return bytes;
}

// One decode test of `batch` sequences (and a prefill test of prompt_tokens, when not 0); prints
// one line (text or JSON).
void measure(Model& model, double weight_bytes, double bandwidth, int threads, const BenchOptions& o, int batch,
             int prompt_tokens) {
  const int vocab = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::mt19937 rng(42);
  std::vector<int32_t> prompt(static_cast<size_t>(std::max(prompt_tokens, 1)));
  for (auto& t : prompt) t = int32_t(rng() % uint32_t(vocab));
  auto cache = model.new_cache(std::max(prompt_tokens, o.gen_tokens) + 1);
  // Decoding several sequences together: one token each per step, from an empty context.
  auto batch_cache = batch > 1 ? model.new_cache(o.gen_tokens + 1, batch) : nullptr;
  // Greedy choices made where the model runs (only token ids come back), as generation does.
  SampleBatch greedy;
  greedy.rows.resize(batch_cache ? size_t(batch) : 1);
  std::vector<int32_t> next(greedy.rows.size());

  auto prefill = [&] {
    cache->clear();
    model.forward(prompt, *cache, logits.data(), false);
  };
  auto decode = [&] {
    if (batch_cache) {
      batch_cache->clear();
      std::vector<int32_t> tokens(prompt.begin(), prompt.begin() + std::min<size_t>(prompt.size(), size_t(batch)));
      tokens.resize(size_t(batch), prompt[0]);
      for (int i = 0; i < o.gen_tokens; ++i) {
        model.decode_batch_sample(tokens, *batch_cache, greedy, next.data());
        tokens = next;
      }
      return;
    }
    cache->clear();
    int32_t token = prompt[0];
    for (int i = 0; i < o.gen_tokens; ++i) token = model.forward_sample(std::span<const int32_t>(&token, 1), *cache, greedy);
  };
  std::vector<double> prefill_rates, decode_rates;
  double warm_up_prefill = 0;  // rep 0's: on a GPU, the first test's carries the one-time start-up costs
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    const double p = prompt_tokens > 0 ? seconds(prefill) : 0;
    const double d = o.gen_tokens > 0 ? seconds(decode) : 0;
    if (rep == 0) {
      warm_up_prefill = p;
      continue;
    }
    if (prompt_tokens > 0) prefill_rates.push_back(prompt_tokens / p);
    if (o.gen_tokens > 0) decode_rates.push_back(double(o.gen_tokens) * batch / d);
  }
  const double prefill_rate = prefill_rates.empty() ? 0 : median(prefill_rates);
  const double decode_rate = decode_rates.empty() ? 0 : median(decode_rates);
  // A decode step reads every weight once, however many sequences it carries: its time cannot be
  // below weight_bytes / bandwidth.
  const double step_seconds = decode_rate > 0 ? batch / decode_rate : 0, bound_seconds = weight_bytes / bandwidth;
  if (o.json) {
    nlohmann::json out = {{"model", model.config().name},
                          {"device", model.device_description()},
                          {"threads", threads},
                          {"weight_bytes_per_token", weight_bytes},
                          {"copy_bandwidth_bytes_per_s", bandwidth},
                          {"decode_step_seconds", step_seconds},
                          {"decode_step_vs_bandwidth_bound", step_seconds / bound_seconds},
                          {"prompt_tokens", prompt_tokens},
                          {"gen_tokens", o.gen_tokens},
                          {"batch", batch},
                          {"reps", o.reps},
                          {"prefill_tokens_per_s", prefill_rate},
                          {"decode_tokens_per_s", decode_rate},
                          {"prefill_runs", prefill_rates},
                          {"warm_up_prefill_seconds", warm_up_prefill},
                          {"decode_runs", decode_rates}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("model %s on %s, %d repetitions (median)\n", model.config().name.c_str(),
                model.device_description().c_str(), o.reps);
    if (prompt_tokens > 0)
      std::printf("prefill %5d tokens: %8.1f tokens/s (the warm-up run: %.1f ms)\n", prompt_tokens, prefill_rate,
                  1e3 * warm_up_prefill);
    std::printf("decode  %5d tokens x %d sequences: %8.1f tokens/s\n", o.gen_tokens, batch, decode_rate);
    if (decode_rate > 0)
      std::printf("        a step takes %.2f ms, %.2fx the %.2f ms needed to read %.3g GB of weights at %.0f GB/s\n",
                  1e3 * step_seconds, step_seconds / bound_seconds, 1e3 * bound_seconds, weight_bytes / 1e9,
                  bandwidth / 1e9);
  }
}

void bench(const BenchOptions& o) {
  // A model file through the engine, or a synthetic model (random weights; no tokenizer needed).
  std::unique_ptr<ThreadPool> own_pool;
  std::unique_ptr<ModelSource> synthetic;
  std::unique_ptr<Model> synthetic_model;
  std::unique_ptr<Engine> engine;
  if (!o.synthetic.empty()) {
    own_pool = std::make_unique<ThreadPool>(o.threads);
    synthetic = make_synthetic_source(o.synthetic, TensorFormat::parse(o.format));
    synthetic_model = load_model(*synthetic, *own_pool, parse_device(o.device));
  } else {
    engine = std::make_unique<Engine>(EngineOptions{resolve_model_path(o.model), o.threads, parse_device(o.device)});
  }
  Model& model = engine ? engine->model() : *synthetic_model;
  const ModelSource& source = engine ? engine->source() : *synthetic;
  const int threads = engine ? engine->pool().size() : own_pool->size();
  const double bandwidth = model.copy_bandwidth();
  for (size_t i = 0; i < o.batches.size(); ++i) {
    // The prefill test runs once, with the first decode test.
    measure(model, weight_bytes_per_token(source), bandwidth, threads, o, o.batches[i], i == 0 ? o.prompt_tokens : 0);
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
  c->add_option("-b,--batch", options->batches,
                 "Sequences decoded together in the decode test (tokens/s counts every sequence's tokens); "
                 "a list such as 1,8,32 runs one decode test per entry on the same model")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  c->add_option("--synthetic", options->synthetic,
                 "Instead of a model file, a model of this shape with random weights (llama3-8b, tiny, "
                "qwen3-30b-a3b, tiny-moe, glm-4.7-flash, tiny-glm)")
      ->check(CLI::IsMember(synthetic_shapes()));
  c->add_option("--format", options->format, "Weight format of the --synthetic model's linear layers (f16, int4-g128, ...)")
      ->capture_default_str();
  c->add_option("-r,--reps", options->reps, "Repetitions (after one warm-up run)")->capture_default_str()->check(CLI::Range(1, 1000));
  c->add_flag("--json", options->json, "Print one JSON object per decode test");
  c->callback([options] { bench(*options); });
}

}  // namespace marlin::cli
