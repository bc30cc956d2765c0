// Quality measurements over a fixed text: perplexity of one model, and how far a second model's
// next-token distributions are from a first one's (KL divergence, top-1 agreement).
//
// The token stream is cut into chunks of `ctx` tokens, each evaluated from an empty cache; the
// first half of a chunk is context and the second half is scored (as llama.cpp's perplexity
// does), so every scored token sees at least ctx/2 tokens before it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "model/model.h"

namespace marlin {

struct EvaluationOptions {
  int ctx = 512;
  int max_chunks = 0;                 // 0: every whole chunk of the text
  std::optional<int32_t> bos;         // replaces the first token of every chunk when set
};

// How many chunks an evaluation of n_tokens tokens runs.
int evaluation_chunks(size_t n_tokens, const EvaluationOptions& options);

// Called after each chunk with (chunks done, chunks in total).
using EvaluationProgress = std::function<void(int done, int total)>;

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;     // nats per token
  double nll_stderr = 0;   // standard error of mean_nll
  int64_t scored_tokens = 0;
  int chunks = 0;
  double seconds = 0;
};

PerplexityResult perplexity(Model& model, std::span<const int32_t> tokens, const EvaluationOptions& options,
                            const EvaluationProgress& progress = {});

struct ComparisonResult {
  double mean_kl = 0;         // KL(A ‖ B) in nats, averaged over scored tokens
  double max_kl = 0;
  double kl_p99 = 0;          // 99th percentile of per-token KL
  double top1_agreement = 0;  // share of tokens where both models' most likely token is the same
  PerplexityResult a, b;      // each model's perplexity on the same tokens
};

// Log-probabilities of one row of n logits, in double.
void log_softmax(const float* logits, int n, std::vector<double>& out);
// KL(p ‖ q) in nats from two rows of log-probabilities (log_softmax's), rounding below 0 clamped.
double kl_divergence(const std::vector<double>& log_p, const std::vector<double>& log_q);

// Both models must share a vocabulary (same tokenizer).
ComparisonResult compare_models(Model& a, Model& b, std::span<const int32_t> tokens, const EvaluationOptions& options,
                                const EvaluationProgress& progress = {});

}  // namespace marlin
