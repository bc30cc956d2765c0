// marlin perplexity / marlin compare: quality of a model, and of one model against another, on a
// fixed text (by default the corpus shipped in tests/fixtures/corpus).
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "runtime/engine.h"
#include "runtime/evaluation.h"
#include "tokenizer/tokenizer.h"

namespace marlin::cli {
namespace {

struct EvalOptions {
  std::string model, other;
  std::string text;
  int ctx = 512;
  int chunks = 0;
  int threads = 0;
  std::string device = "cpu";
  bool json = false;
};

void add_eval_options(CLI::App* c, EvalOptions& o) {
  c->add_option("--text", o.text, "Text file to evaluate on (default: the repository's corpus)");
  c->add_option("--ctx", o.ctx, "Tokens per chunk; the second half of each chunk is scored")
      ->capture_default_str()
      ->check(CLI::Range(4, 1 << 20));
  c->add_option("--chunks", o.chunks, "Evaluate at most this many chunks (0: all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  c->add_option("-t,--threads", o.threads, "Worker threads (default: one per core)")->check(CLI::Range(0, 1024));
  add_device_option(c, o.device);
  c->add_flag("--json", o.json, "Print one JSON object");
}

std::vector<int32_t> corpus_tokens(const Engine& engine, const EvalOptions& o) {
  const std::string path = o.text.empty() ? default_corpus_path() : o.text;
  return engine.tokenizer().encode(read_text_file(path), /*add_special=*/false, /*parse_special=*/false);
}

EvaluationOptions evaluation_options(const Engine& engine, const EvalOptions& o) {
  EvaluationOptions e;
  e.ctx = o.ctx;
  e.max_chunks = o.chunks;
  if (engine.tokenizer().add_bos()) e.bos = engine.tokenizer().bos_id();
  return e;
}

nlohmann::json to_json(const PerplexityResult& r) {
  return {{"perplexity", r.perplexity}, {"mean_nll", r.mean_nll}, {"nll_stderr", r.nll_stderr},
          {"scored_tokens", r.scored_tokens}, {"chunks", r.chunks}, {"seconds", r.seconds}};
}

void run_perplexity(const EvalOptions& o) {
  Engine engine({resolve_model_path(o.model), o.threads, parse_device(o.device)});
  const auto tokens = corpus_tokens(engine, o);
  const auto options = evaluation_options(engine, o);
  ProgressBar bar("perplexity", evaluation_chunks(tokens.size(), options));
  auto result = perplexity(engine.model(), tokens, options, [&](int done, int) { bar.update(done); });
  bar.finish();
  // ppl = exp(mean NLL): its standard error follows from the NLL's by the delta method.
  const double ppl_err = result.perplexity * result.nll_stderr;
  if (o.json) {
    auto j = to_json(result);
    j["perplexity_stderr"] = ppl_err;
    j["model"] = engine.model().config().name;
    j["ctx"] = o.ctx;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.4f ± %.4f over %lld tokens (%d chunks of %d), %.1f s\n", result.perplexity, ppl_err,
                static_cast<long long>(result.scored_tokens), result.chunks, o.ctx, result.seconds);
  }
}

void run_compare(const EvalOptions& o) {
  Engine a({resolve_model_path(o.model), o.threads, parse_device(o.device)});
  Engine b({resolve_model_path(o.other), o.threads, parse_device(o.device)});
  const auto tokens = corpus_tokens(a, o);
  const auto options = evaluation_options(a, o);
  ProgressBar bar("compare", evaluation_chunks(tokens.size(), options));
  auto r = compare_models(a.model(), b.model(), tokens, options, [&](int done, int) { bar.update(done); });
  bar.finish();
  if (o.json) {
    nlohmann::json j = {{"mean_kl", r.mean_kl}, {"kl_p99", r.kl_p99}, {"max_kl", r.max_kl},
                        {"top1_agreement", r.top1_agreement}, {"a", to_json(r.a)}, {"b", to_json(r.b)}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("KL(A || B): mean %.5f, p99 %.5f, max %.4f nats; top-1 agreement %.2f%%\n", r.mean_kl, r.kl_p99,
                r.max_kl, 100 * r.top1_agreement);
    std::printf("perplexity A %.4f, B %.4f over %lld tokens\n", r.a.perplexity, r.b.perplexity,
                static_cast<long long>(r.a.scored_tokens));
  }
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* c = app.add_subcommand("perplexity", "Perplexity of a model on a text (lower is better)");
  c->add_option("model", o->model, "Model file (default: the model scripts/setup.sh fetches)");
  add_eval_options(c, *o);
  c->callback([o] { run_perplexity(*o); });
}

void register_compare(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* c = app.add_subcommand("compare", "How far model B's next-token distributions are from model A's");
  c->add_option("model_a", o->model, "Reference model")->required();
  c->add_option("model_b", o->other, "Model to compare with it (same tokenizer)")->required();
  add_eval_options(c, *o);
  c->callback([o] { run_compare(*o); });
}

}  // namespace marlin::cli
