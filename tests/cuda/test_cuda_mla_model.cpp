// Multi-head latent attention models on the CUDA backend (DeepSeek-V2, DeepSeek-V3, GLM-4.7-Flash)
// against the transformers float64 logits of the tiny fixtures (tools/make_mla_fixtures.py), as
// tests/model/test_mla_parity.cpp checks the CPU backend: the whole prompt in one step, a prompt
// then single-token steps (recorded into a CUDA graph from the second on), and three sequences of
// one cache decoding together.
//
// Bound: as in test_cuda_model.cpp, the GPU's relative rms error after L layers is about
// u·sqrt(k·L) (u = 2^-11) for k fp16 roundings per layer, and the bound is twice that. An MLA
// block rounds 15 activations (q_a, its norm, q, kv_a, the cache row, the absorbed query, P, the
// latent sum, the attention output, o_proj, the MLP's input norm, gate_up, the SwiGLU product,
// down, the next block's norm) and holds these fp32 checkpoints' 8 weight products as fp16 (q_a,
// q_b, kv_a, W_UK, W_UV, o_proj, gate_up, down): k = 23, rounded up to 24. The reference's own
// fp32 error (transformers in fp32 against float64) is far below it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../model/reference.h"
#include "model/model.h"
#include "model/model_source.h"
#include "test_util.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

double relative_rms_error(const float* got, const double* ref, int n) {
  double err = 0, norm = 0;
  for (int i = 0; i < n; ++i) {
    err += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(err / norm);
}

double fp16_bound(const Model& m) { return 2 * test::kHalfUlp * std::sqrt(24.0 * m.config().n_layers); }

// Within the bound, and the same greedy token unless the reference ranks the two within the
// error of a near-tie (test_cuda_model.cpp's expect_same_choice: 5 · bound · rms(logits)).
void expect_row_matches(const float* got, const testing::ReferenceLogits& ref, int position, double bound) {
  const double* want = ref.row(position);
  EXPECT_LE(relative_rms_error(got, want, ref.vocab), bound) << "position " << position;
  const int a = int(std::max_element(want, want + ref.vocab) - want);
  const int b = int(std::max_element(got, got + ref.vocab) - got);
  if (a == b) return;
  double sum = 0;
  for (int i = 0; i < ref.vocab; ++i) sum += want[i] * want[i];
  EXPECT_LE(want[a] - want[b], 5 * bound * std::sqrt(sum / ref.vocab))
      << "position " << position << ": the GPU picks token " << b << ", the reference " << a;
}

class CudaMlaModel : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaMlaModel, EveryPositionInOneStep) {
  MARLIN_REQUIRE_GPU();
  const auto ref = testing::load_reference(kDir, GetParam());
  ASSERT_FALSE(ref.logits.empty());
  ASSERT_EQ(ref.positions, int(ref.tokens.size()));
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool, DeviceKind::kCuda);
  auto cache = model->new_cache(int64_t(ref.tokens.size()));
  std::vector<float> logits(size_t(ref.positions) * size_t(ref.vocab));
  model->forward(ref.tokens, *cache, logits.data(), true);
  const double bound = fp16_bound(*model);
  for (int t = 0; t < ref.positions; ++t) expect_row_matches(&logits[size_t(t) * size_t(ref.vocab)], ref, t, bound);
}

TEST_P(CudaMlaModel, PrefillThenTokenByToken) {
  MARLIN_REQUIRE_GPU();
  const auto ref = testing::load_reference(kDir, GetParam());
  ASSERT_EQ(ref.positions, int(ref.tokens.size()));
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool, DeviceKind::kCuda);
  auto cache = model->new_cache(int64_t(ref.tokens.size()));
  const double bound = fp16_bound(*model);
  std::vector<float> logits(size_t(ref.vocab));
  const size_t prefill = 37;
  model->forward(std::span(ref.tokens).first(prefill), *cache, logits.data(), false);
  expect_row_matches(logits.data(), ref, int(prefill) - 1, bound);
  for (size_t i = prefill; i < ref.tokens.size(); ++i) {
    model->forward(std::span(ref.tokens).subspan(i, 1), *cache, logits.data(), false);
    expect_row_matches(logits.data(), ref, int(i), bound);
  }
  EXPECT_EQ(cache->length(), int64_t(ref.tokens.size()));
}

// Three sequences of one cache at different lengths (prefixes of the reference tokens, pages of
// 16 positions) decode together in a shuffled order; every row must be the reference's row at
// its position.
TEST_P(CudaMlaModel, BatchedDecodeOfSeveralSequences) {
  MARLIN_REQUIRE_GPU();
  const auto ref = testing::load_reference(kDir, GetParam());
  ASSERT_EQ(ref.positions, int(ref.tokens.size()));
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool, DeviceKind::kCuda);
  auto cache = model->new_cache(int64_t(ref.tokens.size()), 3, {.block_size = 16});
  const double bound = fp16_bound(*model);
  const std::vector<int64_t> prefill = {20, 33, 47};
  std::vector<float> logits(3 * size_t(ref.vocab));
  for (int s = 0; s < 3; ++s) {
    model->forward_sequence(s, std::span(ref.tokens).first(size_t(prefill[size_t(s)])), *cache, logits.data(), false);
    expect_row_matches(logits.data(), ref, int(prefill[size_t(s)]) - 1, bound);
  }
  const std::vector<int32_t> seqs = {2, 0, 1};
  for (int step = 0; step < 12; ++step) {
    std::vector<int32_t> tokens;
    for (const int32_t s : seqs) tokens.push_back(ref.tokens[size_t(prefill[size_t(s)] + step)]);
    model->decode_sequences(seqs, tokens, *cache, logits.data());
    for (size_t i = 0; i < seqs.size(); ++i)
      expect_row_matches(&logits[i * size_t(ref.vocab)], ref, int(prefill[size_t(seqs[i])] + step), bound);
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, CudaMlaModel,
                         ::testing::Values("tiny_deepseek_v2", "tiny_deepseek_v3", "tiny_glm4_moe_lite"));

// The cache holds per token and layer the latent and the shared RoPE key in fp16.
TEST(CudaMlaModelCache, HoldsTheLatentAndTheSharedRopeKeyInHalves) {
  MARLIN_REQUIRE_GPU();
  auto source = open_model_source(kDir + "/tiny_deepseek_v3");
  const ModelConfig& c = source->config();
  ThreadPool pool(1);
  auto model = load_model(*source, pool, DeviceKind::kCuda);
  EXPECT_EQ(model->new_cache(64)->bytes_per_token(),
            int64_t(c.n_layers) * (c.mla.kv_lora_rank + c.mla.qk_rope_head_dim) * 2);
}

}  // namespace
}  // namespace marlin
