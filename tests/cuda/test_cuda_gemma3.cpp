// Gemma 3 on the CUDA backend against the CPU backend: the tiny random fixture (both loaders;
// sliding windows shorter than the prompt, prefill crossing the window, then decode steps, one
// sequence and several) and the real Gemma-3-270M GGUF when present.
//
// As in test_cuda_model.cpp the CPU runs with exact activations and the bound is twice the
// estimated fp16 error, u·sqrt(k·L) relative rms. A Gemma block rounds activations to fp16 12
// times (qkv, Q/K norm, cache, attention output, o_proj, its post-norm, the MLP's input norm,
// gate_up, GELU product, down, its post-norm, the next block's input norm), and the GPU holds these
// checkpoints' weights (fp32, or GGML blocks) as fp16, which moves each of the 4 products' outputs
// by about u more: k = 16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "backend/cpu/matmul.h"
#include "model/model.h"
#include "model/model_source.h"
#include "test_util.h"

namespace marlin {
namespace {

const std::string kFixtures = std::string(MARLIN_FIXTURES_DIR) + "/model";
const std::string kGemma = std::string(MARLIN_MODELS_DIR) + "/gemma-3-270m-q4_k_m.gguf";

double relative_rms_error(const float* got, const float* ref, size_t n) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < n; ++i) {
    err += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(err / norm);
}

struct ExactActivations {
  ExactActivations() { cpu::set_exact_activations(true); }
  ~ExactActivations() { cpu::set_exact_activations(false); }
};

double fp16_bound(const Model& m) { return 2 * test::kHalfUlp * std::sqrt(16.0 * m.config().n_layers); }

// Every position of a prompt in one step, then `decode` single-token steps.
void compare_backends(const ModelSource& source, const std::vector<int32_t>& prompt, int decode) {
  ExactActivations exact;
  ThreadPool pool(2);
  auto cpu = load_model(source, pool, DeviceKind::kCpu);
  auto gpu = load_model(source, pool, DeviceKind::kCuda);
  const auto vocab = size_t(cpu->config().vocab_size);
  const double bound = fp16_bound(*cpu);
  const int64_t capacity = int64_t(prompt.size()) + decode;
  auto cache_cpu = cpu->new_cache(capacity), cache_gpu = gpu->new_cache(capacity);
  std::vector<float> a(vocab * prompt.size()), b(a.size());
  cpu->forward(prompt, *cache_cpu, a.data(), true);
  gpu->forward(prompt, *cache_gpu, b.data(), true);
  for (size_t t = 0; t < prompt.size(); ++t)
    EXPECT_LE(relative_rms_error(&b[t * vocab], &a[t * vocab], vocab), bound) << "prompt position " << t;
  std::vector<float> la(vocab), lb(vocab);
  for (int step = 0; step < decode; ++step) {
    const int32_t token = prompt[size_t(step) % prompt.size()];
    cpu->forward(std::span<const int32_t>(&token, 1), *cache_cpu, la.data(), false);
    gpu->forward(std::span<const int32_t>(&token, 1), *cache_gpu, lb.data(), false);
    EXPECT_LE(relative_rms_error(lb.data(), la.data(), vocab), bound) << "decode step " << step;
  }
}

// The vocabulary size from the embedding table (a GGUF's config may leave it to the model).
int vocab_of(const ModelSource& source) { return int(source.tensor("model.embed_tokens.weight")->rows); }

std::vector<int32_t> prompt_of(int n, int vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 37 + 11) % vocab);
  return p;
}

// Window 16: a prompt of 40 (the prefill kernel's window mask and skipped tiles), then 90 decode
// steps (the decode kernel's window across its chunks and KV pages).
TEST(CudaGemma3, TinyModelMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  for (const char* path : {"/tiny_gemma3", "/tiny_gemma3.gguf", "/tiny_gemma3_scaled"}) {
    SCOPED_TRACE(path);
    auto source = open_model_source(kFixtures + path);
    compare_backends(*source, prompt_of(40, vocab_of(*source)), 90);
  }
}

// Prompts longer than one 64-query tile of the prefill kernel, where tiles start past key 0.
TEST(CudaGemma3, TinyModelLongPromptMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  auto source = open_model_source(kFixtures + "/tiny_gemma3");
  compare_backends(*source, prompt_of(200, vocab_of(*source)), 4);
}

// Sequences at different lengths (inside and past the window) decoded together on the GPU,
// against each decoded alone on the CPU.
TEST(CudaGemma3, TinyModelBatchDecodeMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  ExactActivations exact;
  auto source = open_model_source(kFixtures + "/tiny_gemma3");
  ThreadPool pool(2);
  auto cpu = load_model(*source, pool, DeviceKind::kCpu);
  auto gpu = load_model(*source, pool, DeviceKind::kCuda);
  const int vocab = cpu->config().vocab_size;
  const double bound = fp16_bound(*cpu);
  const std::vector<int> prompt_lengths = {3, 15, 16, 17, 40};
  const int batch = int(prompt_lengths.size()), steps = 30;
  auto batch_cache = gpu->new_cache(128, batch);
  std::vector<std::unique_ptr<KvCache>> alone;
  std::vector<float> logits(size_t(batch) * size_t(vocab)), one(static_cast<size_t>(vocab));
  for (int b = 0; b < batch; ++b) {
    const auto prompt = prompt_of(prompt_lengths[size_t(b)] + b, vocab);
    alone.push_back(cpu->new_cache(128));
    cpu->forward(prompt, *alone.back(), one.data(), false);
    gpu->forward_sequence(b, prompt, *batch_cache, logits.data(), false);
  }
  for (int s = 0; s < steps; ++s) {
    std::vector<int32_t> tokens, seqs;
    for (int b = 0; b < batch; ++b) {
      tokens.push_back(int32_t((b * 101 + s * 37 + 3) % vocab));
      seqs.push_back(b);
    }
    gpu->decode_sequences(seqs, tokens, *batch_cache, logits.data());
    for (int b = 0; b < batch; ++b) {
      cpu->forward(std::span<const int32_t>(&tokens[size_t(b)], 1), *alone[size_t(b)], one.data(), false);
      EXPECT_LE(relative_rms_error(&logits[size_t(b) * size_t(vocab)], one.data(), size_t(vocab)), bound)
          << "step " << s << " sequence " << b;
    }
  }
}

// The real model: 600 prompt tokens (past its 512-token window), then decode steps.
TEST(CudaGemma3, Gemma270mMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  if (!std::filesystem::exists(kGemma)) GTEST_SKIP() << kGemma << " is missing";
  auto source = open_model_source(kGemma);
  std::vector<int32_t> prompt = {2};
  for (int i = 1; i < 600; ++i) prompt.push_back(int32_t(1000 + (i * 7919) % 20000));
  compare_backends(*source, prompt, 6);
}

}  // namespace
}  // namespace marlin
