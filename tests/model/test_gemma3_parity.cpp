// Forward pass of tiny random Gemma 3 models (fp32 weights) against transformers
// (tools/make_gemma3_fixtures.py), through both loaders: the Hugging Face folder (norm weights w,
// applied as 1 + w) and the GGUF file llama.cpp's converter would write (norm weights 1 + w).
// The sequence is longer than the sliding window, so windowed and global layers differ.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "formats/hf_config.h"
#include "model/model.h"
#include "model/model_source.h"
#include "reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

double max_abs_diff(const float* ours, const double* ref, int n) {
  double worst = 0;
  for (int i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(ours[i]) - ref[i]));
  return worst;
}

// (fixture name, "hf" or "gguf")
using Variant = std::tuple<std::string, std::string>;

std::unique_ptr<ModelSource> open_variant(const Variant& v) {
  const auto& [name, loader] = v;
  return open_model_source(kDir + "/" + name + (loader == "gguf" ? ".gguf" : ""));
}

TEST(Gemma3Config, BothLoadersReadTheSameModel) {
  auto hf = open_model_source(kDir + "/tiny_gemma3");
  auto gguf = open_model_source(kDir + "/tiny_gemma3.gguf");
  for (const ModelSource* s : {hf.get(), gguf.get()}) {
    const ModelConfig& c = s->config();
    EXPECT_EQ(c.architecture, "gemma3");
    EXPECT_EQ(c.n_layers, 5);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.sliding_window, (std::vector<int>{16, 16, 0, 16, 16}));
    EXPECT_EQ(c.rope.theta, 1e6f);
    EXPECT_EQ(c.rope.pairing, RopePairing::kHalfSplit);
    ASSERT_TRUE(c.sliding_rope.has_value());
    EXPECT_EQ(c.sliding_rope->theta, 1e4f);
    EXPECT_EQ(c.rope_of(2).theta, 1e6f);
    EXPECT_EQ(c.rope_of(3).theta, 1e4f);
    EXPECT_FLOAT_EQ(c.query_scale(), 0.125f);
    EXPECT_FLOAT_EQ(c.embedding_scale, std::sqrt(32.0f));
  }
  EXPECT_EQ(hf->config().norm_weight_offset, 1.0f);  // stored w, applied as 1 + w
  EXPECT_EQ(gguf->config().norm_weight_offset, 0.0f);  // stored 1 + w

  auto scaled = open_model_source(kDir + "/tiny_gemma3_scaled");
  const ModelConfig& c = scaled->config();
  EXPECT_EQ(c.sliding_window, (std::vector<int>{16, 0, 16}));
  EXPECT_FLOAT_EQ(c.query_scale(), 1.0f / std::sqrt(40.0f));
  EXPECT_EQ(c.rope.scaling, RopeScaling::kLinear);
  EXPECT_EQ(c.sliding_rope->scaling, RopeScaling::kNone);
}

// transformers 4.x wrote Gemma 3's RoPE as rope_theta, rope_local_base_freq and a rope_scaling
// that applies to the global layers only; no layer_types, a sliding_window_pattern.
TEST(Gemma3Config, ReadsTransformers4Configs) {
  const auto j = nlohmann::json::parse(R"({
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 640,
    "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "vocab_size": 1000, "query_pre_attn_scalar": 256, "sliding_window": 512,
    "sliding_window_pattern": 6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "torch_dtype": "bfloat16",
    "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": null})");
  const ModelConfig c = model_config_from_hf(j);
  EXPECT_EQ(c.sliding_window, (std::vector<int>{512, 512, 512, 512, 512, 0, 512, 512, 512, 512, 512, 0}));
  EXPECT_EQ(c.rope.theta, 1e6f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::kLinear);
  EXPECT_EQ(c.rope.factor, 8.0f);
  EXPECT_EQ(c.sliding_rope->theta, 1e4f);
  EXPECT_EQ(c.sliding_rope->scaling, RopeScaling::kNone);
  EXPECT_EQ(c.embedding_scale, 25.25f);  // sqrt(640) = 25.298 in bfloat16, as transformers casts it
  EXPECT_EQ(c.norm_weight_offset, 1.0f);

  for (const char* bad : {R"({"final_logit_softcapping": 30.0})", R"({"attn_logit_softcapping": 50.0})",
                          R"({"hidden_activation": "gelu"})", R"({"use_bidirectional_attention": true})",
                          R"({"layer_types": ["sliding_attention"]})", R"({"layer_types": ["local", "global",
                          "local", "local", "local", "local", "local", "local", "local", "local", "local", "local"]})"}) {
    nlohmann::json broken = j;
    broken.merge_patch(nlohmann::json::parse(bad));
    EXPECT_THROW(model_config_from_hf(broken), Error) << bad;
  }
}

class TinyGemma3Parity : public ::testing::TestWithParam<Variant> {};

// Tolerance as in test_llama_parity.cpp: twice the distance of transformers' own fp32 run from
// its float64 run.
TEST_P(TinyGemma3Parity, EveryPositionInOneBatch) {
  const auto ref = testing::load_reference(kDir, std::get<0>(GetParam()));
  ASSERT_FALSE(ref.logits.empty());
  auto source = open_variant(GetParam());
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    auto model = load_model(*source, pool);
    ASSERT_EQ(model->config().vocab_size, ref.vocab);
    auto cache = model->new_cache(int64_t(ref.tokens.size()));
    std::vector<float> logits(static_cast<size_t>(ref.positions) * size_t(ref.vocab));
    model->forward(ref.tokens, *cache, logits.data(), true);
    EXPECT_LE(max_abs_diff(logits.data(), ref.logits.data(), int(logits.size())), 2 * ref.fp32_error)
        << "threads " << threads;
  }
}

// A prompt already longer than the window, then one token at a time, in KV blocks of 4 positions
// (so windows start inside blocks).
TEST_P(TinyGemma3Parity, PrefillThenTokenByToken) {
  const auto ref = testing::load_reference(kDir, std::get<0>(GetParam()));
  auto source = open_variant(GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()), 1, {4, 0});
  std::vector<float> logits(static_cast<size_t>(ref.vocab));
  const size_t prefill = 21;
  model->forward(std::span(ref.tokens).first(prefill), *cache, logits.data(), false);
  EXPECT_LE(max_abs_diff(logits.data(), ref.row(int(prefill) - 1), ref.vocab), 2 * ref.fp32_error);
  for (size_t i = prefill; i < ref.tokens.size(); ++i) {
    model->forward(std::span(ref.tokens).subspan(i, 1), *cache, logits.data(), false);
    ASSERT_LE(max_abs_diff(logits.data(), ref.row(int(i)), ref.vocab), 2 * ref.fp32_error) << "position " << i;
  }
}

// Two sequences at different lengths decode in one step each time.
TEST_P(TinyGemma3Parity, BatchedDecodeOfTwoSequences) {
  const auto ref = testing::load_reference(kDir, std::get<0>(GetParam()));
  auto source = open_variant(GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()), 2);
  const std::vector<size_t> start = {9, 30};
  std::vector<float> logits(2 * static_cast<size_t>(ref.vocab));
  for (int s = 0; s < 2; ++s)
    model->forward_sequence(s, std::span(ref.tokens).first(start[size_t(s)]), *cache, logits.data(), false);
  for (size_t step = 0; start[1] + step < ref.tokens.size(); ++step) {
    const std::vector<int32_t> seqs = {0, 1};
    const std::vector<int32_t> tokens = {ref.tokens[start[0] + step], ref.tokens[start[1] + step]};
    model->decode_sequences(seqs, tokens, *cache, logits.data());
    for (int s = 0; s < 2; ++s)
      ASSERT_LE(max_abs_diff(logits.data() + s * ref.vocab, ref.row(int(start[size_t(s)] + step)), ref.vocab),
                2 * ref.fp32_error)
          << "sequence " << s << " step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(Loaders, TinyGemma3Parity,
                         ::testing::Values(Variant{"tiny_gemma3", "hf"}, Variant{"tiny_gemma3", "gguf"},
                                           Variant{"tiny_gemma3_scaled", "hf"}),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

}  // namespace
}  // namespace marlin

namespace marlin {
namespace {

// Gemma 3 4B/12B/27B's form, Gemma3ForConditionalGeneration: the config in text_config, the
// language model under language_model.model.*, a vision tower marlin does not read. The fixture
// holds tiny_gemma3's language model, so it must compute tiny_gemma3's logits bit for bit.
TEST(Gemma3Multimodal, ReadsTheLanguageModel) {
  auto text = open_model_source(kDir + "/tiny_gemma3");
  auto multi = open_model_source(kDir + "/tiny_gemma3_multimodal");
  EXPECT_EQ(multi->config().architecture, "gemma3");
  std::vector<std::string> names = multi->tensor_names(), text_names = text->tensor_names();
  std::sort(names.begin(), names.end());
  std::sort(text_names.begin(), text_names.end());
  EXPECT_EQ(names, text_names);  // the vision tower and projector are left out
  const auto ref = testing::load_reference(kDir, "tiny_gemma3");
  ThreadPool pool(2);
  std::vector<float> a(static_cast<size_t>(ref.positions) * size_t(ref.vocab)), b(a.size());
  for (auto [source, out] : {std::pair{text.get(), &a}, std::pair{multi.get(), &b}}) {
    auto model = load_model(*source, pool);
    auto cache = model->new_cache(int64_t(ref.tokens.size()));
    model->forward(ref.tokens, *cache, out->data(), true);
  }
  EXPECT_EQ(a, b);
}

// The real 4B's config.json gives only what differs from Gemma3TextConfig's defaults.
TEST(Gemma3Multimodal, FillsTextConfigDefaults) {
  const auto j = nlohmann::json::parse(R"({
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "torch_dtype": "bfloat16",
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                    "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                    "sliding_window": 1024},
    "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}})");
  const ModelConfig c = model_config_from_hf(j);
  EXPECT_EQ(c.architecture, "gemma3");
  EXPECT_EQ(c.d_model, 2560);
  EXPECT_EQ(c.n_layers, 34);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab_size, 262208);
  EXPECT_EQ(c.rope.theta, 1e6f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::kLinear);
  EXPECT_EQ(c.rope.factor, 8.0f);
  EXPECT_EQ(c.sliding_rope->theta, 1e4f);
  EXPECT_EQ(c.window(0), 1024);
  EXPECT_EQ(c.window(5), 0);  // every 6th layer is global
  EXPECT_FLOAT_EQ(c.query_scale(), 1.0f / 16.0f);
  EXPECT_EQ(c.embedding_scale, 50.5f);  // sqrt(2560) = 50.596 in bfloat16
  EXPECT_THROW(model_config_from_hf(nlohmann::json::parse(
                   R"({"architectures": ["Gemma3ForConditionalGeneration"], "text_config": [1]})")),
               Error);
}

}  // namespace
}  // namespace marlin
