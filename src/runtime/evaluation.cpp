#include "runtime/evaluation.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace marlin {

void log_softmax(const float* logits, int n, std::vector<double>& out) {
  out.resize(size_t(n));
  double max = logits[0];
  for (int i = 1; i < n; ++i) max = std::max(max, double(logits[i]));
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - max);
  const double log_z = max + std::log(sum);
  for (int i = 0; i < n; ++i) out[size_t(i)] = double(logits[i]) - log_z;
}

double kl_divergence(const std::vector<double>& log_p, const std::vector<double>& log_q) {
  double kl = 0;
  for (size_t v = 0; v < log_p.size(); ++v) kl += std::exp(log_p[v]) * (log_p[v] - log_q[v]);
  return std::max(kl, 0.0);
}

namespace {

struct Chunks {
  int count = 0;
  int ctx = 0;
};

Chunks plan_chunks(const Model& model, std::span<const int32_t> tokens, const EvaluationOptions& o) {
  MARLIN_CHECK(o.ctx >= 4, "evaluation context must be at least 4 tokens, got {}", o.ctx);
  MARLIN_CHECK(o.ctx <= model.config().context_length, "evaluation context {} exceeds the model's {}", o.ctx,
               model.config().context_length);
  Chunks c{evaluation_chunks(tokens.size(), o), o.ctx};
  MARLIN_CHECK(c.count > 0, "the text has {} tokens, fewer than one chunk of {}", tokens.size(), o.ctx);
  return c;
}

// Runs one chunk and returns the logits of its scored half (ctx/2 rows).
void score_chunk(Model& model, KvCache& cache, std::span<const int32_t> tokens, const EvaluationOptions& o,
                 std::vector<int32_t>& chunk, std::vector<float>& logits) {
  chunk.assign(tokens.begin(), tokens.end());
  if (o.bos) chunk[0] = *o.bos;
  const size_t half = chunk.size() / 2;
  cache.clear();
  std::vector<float> last(static_cast<size_t>(model.config().vocab_size));
  model.forward(std::span<const int32_t>(chunk).first(half), cache, last.data(), false);
  // Logits at positions half-1 .. ctx-2 predict tokens half .. ctx-1.
  logits.resize((chunk.size() - half) * size_t(model.config().vocab_size));
  std::copy(last.begin(), last.end(), logits.begin());
  model.forward(std::span<const int32_t>(chunk).subspan(half, chunk.size() - half - 1), cache,
                logits.data() + last.size(), true);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Accumulates per-token negative log-likelihoods.
struct NllStats {
  double sum = 0, sum_sq = 0;
  int64_t n = 0;
  void add(double nll) {
    sum += nll;
    sum_sq += nll * nll;
    ++n;
  }
  void finish(PerplexityResult& r) const {
    r.scored_tokens = n;
    r.mean_nll = n ? sum / double(n) : 0;
    r.perplexity = std::exp(r.mean_nll);
    const double var = n > 1 ? (sum_sq / double(n) - r.mean_nll * r.mean_nll) * double(n) / double(n - 1) : 0;
    r.nll_stderr = n > 1 ? std::sqrt(std::max(var, 0.0) / double(n)) : 0;
  }
};

}  // namespace

int evaluation_chunks(size_t n_tokens, const EvaluationOptions& o) {
  if (o.ctx <= 0) return 0;
  const int whole = int(n_tokens / size_t(o.ctx));
  return o.max_chunks > 0 ? std::min(whole, o.max_chunks) : whole;
}

PerplexityResult perplexity(Model& model, std::span<const int32_t> tokens, const EvaluationOptions& o,
                            const EvaluationProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const Chunks plan = plan_chunks(model, tokens, o);
  const int vocab = model.config().vocab_size;
  auto cache = model.new_cache(plan.ctx);
  std::vector<int32_t> chunk;
  std::vector<float> logits;
  std::vector<double> logp;
  NllStats stats;
  for (int c = 0; c < plan.count; ++c) {
    const auto piece = tokens.subspan(size_t(c) * size_t(plan.ctx), size_t(plan.ctx));
    score_chunk(model, *cache, piece, o, chunk, logits);
    const size_t half = chunk.size() / 2;
    for (size_t i = half; i < chunk.size(); ++i) {
      log_softmax(&logits[(i - half) * size_t(vocab)], vocab, logp);
      stats.add(-logp[size_t(chunk[i])]);
    }
    if (progress) progress(c + 1, plan.count);
  }
  PerplexityResult r;
  stats.finish(r);
  r.chunks = plan.count;
  r.seconds = seconds_since(start);
  return r;
}

ComparisonResult compare_models(Model& a, Model& b, std::span<const int32_t> tokens, const EvaluationOptions& o,
                                const EvaluationProgress& progress) {
  MARLIN_CHECK(a.config().vocab_size == b.config().vocab_size, "the models have different vocabularies ({} and {})",
               a.config().vocab_size, b.config().vocab_size);
  const auto start = std::chrono::steady_clock::now();
  const Chunks plan = plan_chunks(a, tokens, o);
  plan_chunks(b, tokens, o);
  const int vocab = a.config().vocab_size;
  auto cache_a = a.new_cache(plan.ctx), cache_b = b.new_cache(plan.ctx);
  std::vector<int32_t> chunk;
  std::vector<float> logits_a, logits_b;
  std::vector<double> lp_a, lp_b, kls;
  NllStats stats_a, stats_b;
  int64_t agree = 0;
  for (int c = 0; c < plan.count; ++c) {
    const auto piece = tokens.subspan(size_t(c) * size_t(plan.ctx), size_t(plan.ctx));
    score_chunk(a, *cache_a, piece, o, chunk, logits_a);
    score_chunk(b, *cache_b, piece, o, chunk, logits_b);
    const size_t half = chunk.size() / 2;
    for (size_t i = half; i < chunk.size(); ++i) {
      log_softmax(&logits_a[(i - half) * size_t(vocab)], vocab, lp_a);
      log_softmax(&logits_b[(i - half) * size_t(vocab)], vocab, lp_b);
      kls.push_back(kl_divergence(lp_a, lp_b));
      agree += std::max_element(lp_a.begin(), lp_a.end()) - lp_a.begin() ==
               std::max_element(lp_b.begin(), lp_b.end()) - lp_b.begin();
      stats_a.add(-lp_a[size_t(chunk[i])]);
      stats_b.add(-lp_b[size_t(chunk[i])]);
    }
    if (progress) progress(c + 1, plan.count);
  }
  ComparisonResult r;
  stats_a.finish(r.a);
  stats_b.finish(r.b);
  r.a.chunks = r.b.chunks = plan.count;
  r.a.seconds = r.b.seconds = seconds_since(start);
  double sum = 0;
  for (double k : kls) sum += k;
  r.mean_kl = sum / double(kls.size());
  std::sort(kls.begin(), kls.end());
  r.max_kl = kls.back();
  r.kl_p99 = kls[std::min(kls.size() - 1, size_t(double(kls.size()) * 0.99))];
  r.top1_agreement = double(agree) / double(kls.size());
  return r;
}

}  // namespace marlin
