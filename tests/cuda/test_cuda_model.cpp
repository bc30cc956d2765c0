// Whole models on the CUDA backend against the CPU backend: the default model (Q4_1 weights,
// which the GPU runs as fp16), small random int4, int3 and int2 models (the fused kernels) and a
// tiny Qwen3 (per-head q/k norms).
//
// The CPU reference runs with exact activations (fp32 activations, fp64 accumulation), so its
// error is fp32 rounding only. The GPU rounds to fp16 (unit roundoff u = 2^-11) at every matmul
// input and output and at the cache: about 7 roundings per layer, errors that add up in
// quadrature, so after L layers the relative rms error of the logits is about u·sqrt(7·L):
// 0.7% for the default model's 30 layers. The bound is twice that estimate.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "backend/cpu/matmul.h"
#include "model/model.h"
#include "model/model_source.h"
#include "model/synthetic_source.h"
#include "quant/dequant.h"
#include "quant/quant_buffers.h"
#include "test_util.h"

namespace marlin {
namespace {

const std::string kModel = std::string(MARLIN_MODELS_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";

double relative_rms_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(err / norm);
}

int argmax(const float* v, int n) { return int(std::max_element(v, v + n) - v); }

// The greedy choices agree, or the CPU ranks the GPU's choice within the error of a near-tie: a
// logit difference of two entries whose errors are each about bound·rms(logits) stays below
// 3·sqrt(2) of that (three standard deviations), rounded up to 5.
void expect_same_choice(const float* cpu, const float* gpu, int vocab, double bound) {
  const int a = argmax(cpu, vocab), b = argmax(gpu, vocab);
  if (a == b) return;
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += double(cpu[i]) * cpu[i];
  const double tie = 5 * bound * std::sqrt(sum / vocab);
  EXPECT_LE(double(cpu[a]) - cpu[b], tie) << "the GPU picks token " << b << ", the CPU " << a;
}

struct ExactActivations {
  ExactActivations() { cpu::set_exact_activations(true); }
  ~ExactActivations() { cpu::set_exact_activations(false); }
};

// Logits of a prompt (one prefill step) and then of `decode` single-token steps feeding back the
// CPU's greedy choice, on both backends; checks the error bound and the greedy tokens.
// `roundings` counts the fp16 roundings of one layer (7 unless the weights' kernels add some).
void compare_backends(const ModelSource& source, const std::vector<int32_t>& prompt, int decode,
                      double roundings = 7) {
  ExactActivations exact;
  ThreadPool pool(2);
  auto cpu = load_model(source, pool, DeviceKind::kCpu);
  auto gpu = load_model(source, pool, DeviceKind::kCuda);
  const int vocab = cpu->config().vocab_size;
  const double bound = 2 * test::kHalfUlp * std::sqrt(roundings * cpu->config().n_layers);
  auto cache_cpu = cpu->new_cache(512), cache_gpu = gpu->new_cache(512);
  std::vector<float> a(size_t(vocab) * prompt.size()), b(a.size());
  cpu->forward(prompt, *cache_cpu, a.data(), true);
  gpu->forward(prompt, *cache_gpu, b.data(), true);
  EXPECT_LE(relative_rms_error(b, a), bound) << "prompt";
  for (size_t t = 0; t < prompt.size(); ++t) expect_same_choice(&a[t * size_t(vocab)], &b[t * size_t(vocab)], vocab, bound);

  std::vector<float> la(static_cast<size_t>(vocab)), lb(static_cast<size_t>(vocab));
  int32_t token = argmax(&a[(prompt.size() - 1) * size_t(vocab)], vocab);
  for (int step = 0; step < decode; ++step) {
    cpu->forward(std::span<const int32_t>(&token, 1), *cache_cpu, la.data(), false);
    gpu->forward(std::span<const int32_t>(&token, 1), *cache_gpu, lb.data(), false);
    EXPECT_LE(relative_rms_error(lb, la), bound) << "decode step " << step;
    expect_same_choice(la.data(), lb.data(), vocab, bound);
    token = argmax(la.data(), vocab);
  }
}

TEST(CudaModel, DefaultModelMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  if (!std::filesystem::exists(kModel)) GTEST_FAIL() << kModel << " is missing: run scripts/setup.sh";
  auto source = open_model_source(kModel);
  // A prefill of 12 tokens, then 8 decode steps.
  compare_backends(*source, {504, 3575, 282, 4649, 314, 28, 378, 1029, 3405, 30, 216, 42}, 8);
}

TEST(CudaModel, Int4ModelMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  compare_backends(*source, {1, 17, 400, 3, 99, 256, 7, 8, 300, 511, 2, 45, 46, 47, 100, 101, 5}, 12);
}

// int3 and int2 weights on their fused kernels (lowbit_tiles.h): GEMV for the decode steps, the
// striped kernel for the prompt, against the CPU. This tiny model has a decode step whose
// attention is close to a tie between positions, where fp16 activations alone move the logits by
// a few percent (cuBLAS on the same weights in fp16 moves them as much). So a step's error must
// stay within the fp16 bound, or within 1.5× the error of the GPU's fp16 path on the same weights
// dequantized (a model whose linear weights were replaced by their f32 values).
// Qwen3's per-head q/k norms (fp32 weights, run in fp16 on the GPU).
TEST(CudaModel, Qwen3MatchesCpu) {
  MARLIN_REQUIRE_GPU();
  auto source = open_model_source(std::string(MARLIN_FIXTURES_DIR) + "/model/tiny_qwen3");
  compare_backends(*source, {1, 17, 100, 3, 99, 126, 7, 8, 30, 51, 2, 45, 46, 47, 100, 101, 5}, 12);
}

// Sparse MLPs (the Qwen3-MoE layout: 8 experts, 2 per token), experts in int4 tiles and in fp16,
// over a prompt and single-token steps; then the GLM layout.
TEST(CudaModel, MoeModelsMatchCpu) {
  MARLIN_REQUIRE_GPU();
  for (const char* format : {"int4-g128", "f16"}) {
    SCOPED_TRACE(format);
    auto source = make_synthetic_source("tiny-moe", TensorFormat::parse(format));
    compare_backends(*source, {1, 17, 400, 3, 99, 256, 7, 8, 300, 511, 2, 45, 46, 47, 100, 101, 5}, 12);
  }
  // GLM-4.7-Flash's layout (MLA, sigmoid routing with a score bias, a shared expert run as one
  // more slot), int4 experts on the routed kernel.
  auto glm = make_synthetic_source("tiny-glm", TensorFormat::parse("int4-g128"));
  compare_backends(*glm, {1, 17, 400, 3, 99, 256, 7, 8, 300, 511, 2, 45, 46, 47, 100, 101, 5}, 12);
}

TEST(CudaModel, LowBitModelsMatchCpu) {
  MARLIN_REQUIRE_GPU();
  ExactActivations exact;
  for (const char* format : {"int3-g128-asym", "int3-g64", "int2-g64", "int2-g128-asym"}) {
    SCOPED_TRACE(format);
    auto source = make_synthetic_source("tiny", TensorFormat::parse(format));
    ThreadPool pool(2);
    auto cpu = load_model(*source, pool, DeviceKind::kCpu);
    auto fused = load_model(*source, pool, DeviceKind::kCuda);
    auto dense = load_model(*source, pool, DeviceKind::kCuda);
    std::vector<QuantBuffers> f32_weights;
    f32_weights.reserve(source->tensor_names().size());
    for (const std::string& name : source->tensor_names()) {
      if (name.find("_proj.") == std::string::npos) continue;
      const QuantTensor w = *source->tensor(name);
      f32_weights.push_back(QuantBuffers::allocate(TensorFormat{FormatKind::kF32}, w.rows, w.cols));
      for (int64_t r = 0; r < w.rows; ++r)
        dequantize_row(w, r, reinterpret_cast<float*>(f32_weights.back().codes.data()) + r * w.cols);
      dense->replace_weight(name, f32_weights.back().view());
    }
    const int vocab = cpu->config().vocab_size;
    const double bound = 2 * test::kHalfUlp * std::sqrt(7.0 * cpu->config().n_layers);
    auto c_cpu = cpu->new_cache(64), c_fused = fused->new_cache(64), c_dense = dense->new_cache(64);
    std::vector<int32_t> tokens = {1, 17, 400, 3, 99, 256, 7, 8, 300, 511, 2, 45, 46, 47, 100, 101, 5};
    std::vector<float> a(static_cast<size_t>(vocab)), b(a.size()), d(a.size());
    for (int step = 0; step <= 8; ++step) {
      cpu->forward(tokens, *c_cpu, a.data(), false);
      fused->forward(tokens, *c_fused, b.data(), false);
      dense->forward(tokens, *c_dense, d.data(), false);
      const double allowed = std::max(bound, 1.5 * relative_rms_error(d, a));
      EXPECT_LE(relative_rms_error(b, a), allowed) << "step " << step;
      expect_same_choice(a.data(), b.data(), vocab, allowed);
      tokens = {argmax(a.data(), vocab)};
    }
  }
}

// Trellis weights (random bitstreams, cuda trellis_kernels.h), each linear with one rounding more
// (its rotated input in fp16; 4 linears a layer): the fused decode + product for a 17-row prompt
// and the decode steps, whose weights are the codes' exact piece sums (within half an fp16 ulp of
// the stored codes: one more rounding per linear); then the many-row path (weights decoded to
// fp16, cuBLAS, whose fp16 products before the output rotation are that second rounding per
// linear) for a 40-row prompt.
TEST(CudaModel, TrellisModelsMatchCpu) {
  MARLIN_REQUIRE_GPU();
  for (const char* format : {"trellis2", "trellis4"}) {
    SCOPED_TRACE(format);
    auto source = make_synthetic_source("tiny", TensorFormat::parse(format));
    compare_backends(*source, {1, 17, 400, 3, 99, 256, 7, 8, 300, 511, 2, 45, 46, 47, 100, 101, 5}, 12, 7 + 8);
    std::vector<int32_t> prompt(40);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 37 + 11) % 512);
    compare_backends(*source, prompt, 2, 7 + 8);
  }
}

// A prompt long enough for the many-row path (int4 unpacked to fp16, cuBLAS).
TEST(CudaModel, Int4ModelLongPromptMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g64-asym"));
  std::vector<int32_t> prompt(300);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 37 + 11) % 512);
  compare_backends(*source, prompt, 3);
}

// Several sequences decoded together on the GPU against each decoded alone on the CPU: the tiny
// dense model, and the sparse one with steps that route on the device (5 tokens; recorded into a
// graph from the second step on) and on the host (12 tokens).
TEST(CudaModel, BatchDecodeMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  ExactActivations exact;
  for (auto [shape, batch] : {std::pair<const char*, int>{"tiny", 5}, {"tiny-moe", 5}, {"tiny-moe", 12}}) {
    SCOPED_TRACE(testing::Message() << shape << " batch " << batch);
    auto source = make_synthetic_source(shape, TensorFormat::parse("int4-g128"));
    ThreadPool pool(2);
    auto cpu = load_model(*source, pool, DeviceKind::kCpu);
    auto gpu = load_model(*source, pool, DeviceKind::kCuda);
    const int vocab = cpu->config().vocab_size, steps = 6;
    const double bound = 2 * test::kHalfUlp * std::sqrt(7.0 * cpu->config().n_layers);
    auto batch_cache = gpu->new_cache(64, batch);
    std::vector<float> logits(size_t(batch) * size_t(vocab)), one(static_cast<size_t>(vocab));
    std::vector<std::unique_ptr<KvCache>> alone;
    for (int b = 0; b < batch; ++b) alone.push_back(cpu->new_cache(64));
    for (int s = 0; s < steps; ++s) {
      std::vector<int32_t> tokens;
      for (int b = 0; b < batch; ++b) tokens.push_back(int32_t((b * 101 + s * 37 + 3) % vocab));
      gpu->decode_batch(tokens, *batch_cache, logits.data());
      for (int b = 0; b < batch; ++b) {
        cpu->forward(std::span<const int32_t>(&tokens[size_t(b)], 1), *alone[size_t(b)], one.data(), false);
        const std::vector<float> row(logits.begin() + b * vocab, logits.begin() + (b + 1) * vocab);
        EXPECT_LE(relative_rms_error(row, one), bound) << "step " << s << " sequence " << b;
        expect_same_choice(one.data(), row.data(), vocab, bound);
      }
    }
  }
}

// Continuous batching on the GPU: sequences of one cache at their own lengths, joining and leaving
// (a slot reused), against each sequence decoded alone on the CPU. Steps of every batch size
// replay recorded graphs from their second use on.
TEST(CudaModel, SequencesJoinAndLeaveMatchCpu) {
  MARLIN_REQUIRE_GPU();
  ExactActivations exact;
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(2);
  auto cpu = load_model(*source, pool, DeviceKind::kCpu);
  auto gpu = load_model(*source, pool, DeviceKind::kCuda);
  const int vocab = cpu->config().vocab_size;
  const double bound = 2 * test::kHalfUlp * std::sqrt(7.0 * cpu->config().n_layers);
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 100, 7, 3}, {400, 2}, {1, 511, 256}, {17, 18, 19, 20}};
  const std::vector<int> slot_of = {0, 2, 1, 0};
  const auto feed = [](int r, int step) { return int32_t((r * 131 + step * 17 + 1) % 512); };
  std::vector<std::unique_ptr<KvCache>> alone;
  for (size_t r = 0; r < prompts.size(); ++r) alone.push_back(cpu->new_cache(40));
  auto shared = gpu->new_cache(40, 3);
  std::vector<int> steps(prompts.size(), 0);
  std::vector<float> one(static_cast<size_t>(vocab)), got(static_cast<size_t>(vocab)), logits(3 * size_t(vocab));
  const auto check = [&](int r, const float* gpu_logits, const char* what) {
    const std::vector<float> row(gpu_logits, gpu_logits + vocab);
    EXPECT_LE(relative_rms_error(row, one), bound) << what << " of request " << r << " at step " << steps[size_t(r)];
    expect_same_choice(one.data(), row.data(), vocab, bound);
  };
  const auto prefill = [&](int r) {
    cpu->forward(prompts[size_t(r)], *alone[size_t(r)], one.data(), false);
    gpu->forward_sequence(slot_of[size_t(r)], prompts[size_t(r)], *shared, got.data(), false);
    check(r, got.data(), "prompt");
  };
  const auto decode = [&](const std::vector<int>& active) {
    std::vector<int32_t> seqs, tokens;
    for (int r : active) {
      seqs.push_back(slot_of[size_t(r)]);
      tokens.push_back(feed(r, steps[size_t(r)]));
    }
    gpu->decode_sequences(seqs, tokens, *shared, logits.data());
    for (size_t i = 0; i < active.size(); ++i) {
      const int r = active[i];
      cpu->forward(std::span<const int32_t>(&tokens[i], 1), *alone[size_t(r)], one.data(), false);
      check(r, &logits[i * size_t(vocab)], "decode");
      ++steps[size_t(r)];
    }
  };
  prefill(1);
  prefill(0);
  for (int round = 0; round < 3; ++round) {  // the same batch sizes again: graph replays
    decode({1, 0});
    decode({0, 1});
  }
  prefill(2);
  decode({2, 0, 1});
  decode({0, 2});
  shared->truncate(0, slot_of[3]);  // request 0 leaves; request 3 takes its slot
  prefill(3);
  decode({3, 1, 2});
  decode({2, 3});
  decode({3, 1, 2});
  decode({3});
  EXPECT_EQ(shared->length(0), 4 + 4);
}

// The paged cache with other block sizes: sequences that start from another's prefix blocks
// (mapped, the partly shared block copied on the device before it is written) match the CPU
// computing each sequence alone, through prefill and through decode steps replayed from graphs.
// Sequence 2's tokens make a few steps ill-conditioned (the GPU computing it alone, without any
// sharing, is off by up to 1.7× the fp16 bound at every block size), so as in LowBitModelsMatchCpu
// a step may also be off by 1.5× the error of the GPU's own unshared run of the same sequence.
TEST(CudaModel, SharedPrefixBlocksMatchCpu) {
  MARLIN_REQUIRE_GPU();
  ExactActivations exact;
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(2);
  auto cpu = load_model(*source, pool, DeviceKind::kCpu);
  auto gpu = load_model(*source, pool, DeviceKind::kCuda);
  const int vocab = cpu->config().vocab_size;
  const double bound = 2 * test::kHalfUlp * std::sqrt(7.0 * cpu->config().n_layers);
  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 37 + 11) % 512);
  for (const int block_size : {16, 64}) {
    // Sequence 1 shares 20 positions (a block shared mid-way at 16), sequence 2 shares 32.
    const std::vector<int64_t> shared_length = {0, 20, 32};
    std::vector<std::vector<int32_t>> prompts(3, prompt);
    prompts[1].back() = 1;
    prompts[2].back() = 2;
    auto cache = gpu->new_cache(96, 3, {block_size, 0});
    std::vector<std::unique_ptr<KvCache>> alone, gpu_alone;
    std::vector<float> one(static_cast<size_t>(vocab)), solo(one.size()), got(one.size()), logits(3 * size_t(vocab));
    const auto check = [&](int s, const float* gpu_logits, int step) {
      const std::vector<float> row(gpu_logits, gpu_logits + vocab);
      const double allowed = std::max(bound, 1.5 * relative_rms_error(solo, one));
      EXPECT_LE(relative_rms_error(row, one), allowed)
          << "sequence " << s << " step " << step << " blocks of " << block_size;
      expect_same_choice(one.data(), row.data(), vocab, allowed);
    };
    for (int s = 0; s < 3; ++s) {
      alone.push_back(cpu->new_cache(96));
      cpu->forward(prompts[size_t(s)], *alone.back(), one.data(), false);
      gpu_alone.push_back(gpu->new_cache(96));
      gpu->forward(prompts[size_t(s)], *gpu_alone.back(), solo.data(), false);
      const int64_t from = shared_length[size_t(s)];
      if (from > 0) cache->share_prefix(s, 0, from);
      gpu->forward_sequence(s, std::span(prompts[size_t(s)]).subspan(size_t(from)), *cache, got.data(), false);
      check(s, got.data(), -1);
    }
    for (int step = 0; step < 30; ++step) {  // crosses block boundaries; the same shape replays a graph
      const std::vector<int32_t> seqs = {0, 1, 2};
      std::vector<int32_t> tokens;
      for (int s = 0; s < 3; ++s) tokens.push_back(int32_t((s * 131 + step * 17 + 1) % 512));
      gpu->decode_sequences(seqs, tokens, *cache, logits.data());
      for (int s = 0; s < 3; ++s) {
        const std::span<const int32_t> token(&tokens[size_t(s)], 1);
        cpu->forward(token, *alone[size_t(s)], one.data(), false);
        gpu->forward(token, *gpu_alone[size_t(s)], solo.data(), false);
        check(s, &logits[size_t(s) * size_t(vocab)], step);
      }
    }
    for (int s = 0; s < 3; ++s) cache->truncate(0, s);
    EXPECT_EQ(cache->blocks().free_blocks(), cache->blocks().total_blocks());
  }
}

// Decode steps replayed from CUDA graphs give exactly what direct launches give.
TEST(CudaModel, GraphReplayIsExact) {
  MARLIN_REQUIRE_GPU();
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(1);
  std::vector<std::vector<float>> runs;
  for (const char* graphs : {"1", "0"}) {
    setenv("MARLIN_CUDA_GRAPHS", graphs, 1);
    auto gpu = load_model(*source, pool, DeviceKind::kCuda);
    auto cache = gpu->new_cache(64);
    std::vector<float> logits(size_t(gpu->config().vocab_size)), all;
    std::vector<int32_t> prompt = {3, 4, 5};
    gpu->forward(prompt, *cache, logits.data(), false);
    for (int32_t token = 9; token < 30; ++token) {
      gpu->forward(std::span<const int32_t>(&token, 1), *cache, logits.data(), false);
      all.insert(all.end(), logits.begin(), logits.end());
    }
    runs.push_back(all);
  }
  unsetenv("MARLIN_CUDA_GRAPHS");
  ASSERT_EQ(runs[0].size(), runs[1].size());
  EXPECT_TRUE(std::equal(runs[0].begin(), runs[0].end(), runs[1].begin()));
}

}  // namespace
}  // namespace marlin
