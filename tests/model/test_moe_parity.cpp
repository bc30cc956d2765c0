// Forward pass of tiny random mixture-of-experts checkpoints (Mixtral, Qwen3-MoE; Hugging Face
// folders with fp32 weights) against transformers (tools/make_moe_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>

#include "backend/cpu/matmul.h"
#include "backend/cpu/ops.h"
#include "model/model.h"
#include "model/model_source.h"
#include "model/weights.h"
#include "quant/dequant.h"
#include "quant/rtn.h"
#include "tokenizer/tokenizer.h"
#include "reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

double max_abs_diff(const float* ours, const double* ref, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(ours[i]) - ref[i]));
  return worst;
}

// Every position's logits in one forward pass.
std::vector<float> all_logits(Model& model, const testing::ReferenceLogits& ref) {
  auto cache = model.new_cache(int64_t(ref.tokens.size()));
  std::vector<float> logits(static_cast<size_t>(ref.positions) * size_t(ref.vocab));
  model.forward(ref.tokens, *cache, logits.data(), true);
  return logits;
}

// The checkpoint with its MoE routing changed (to show that the parity tests notice).
class AlteredRouting final : public ModelSource {
 public:
  AlteredRouting(const ModelSource& inner, MoeRouting routing) : inner_(inner), config_(inner.config()) {
    config_.moe.routing = routing;
  }
  const ModelConfig& config() const override { return config_; }
  std::unique_ptr<Tokenizer> tokenizer() const override { return inner_.tokenizer(); }
  std::string chat_template() const override { return inner_.chat_template(); }
  std::optional<QuantTensor> tensor(std::string_view name) const override { return inner_.tensor(name); }
  std::vector<std::string> tensor_names() const override { return inner_.tensor_names(); }
  std::string description() const override { return inner_.description(); }
  nlohmann::json hf_config() const override { return inner_.hf_config(); }
  std::string tokenizer_json() const override { return inner_.tokenizer_json(); }
  std::string tokenizer_config_json() const override { return inner_.tokenizer_config_json(); }

 private:
  const ModelSource& inner_;
  ModelConfig config_;
};

// A checkpoint (a Hugging Face folder or a GGUF file) and its reference logits.
struct Checkpoint {
  std::string path, reference;
};

void PrintTo(const Checkpoint& c, std::ostream* os) { *os << c.path; }

class MoeParity : public ::testing::TestWithParam<Checkpoint> {
 protected:
  void SetUp() override {
    ref_ = testing::load_reference(kDir, GetParam().reference);
    ASSERT_FALSE(ref_.logits.empty());
    source_ = open_model_source(kDir + "/" + GetParam().path);
  }
  testing::ReferenceLogits ref_;
  std::unique_ptr<ModelSource> source_;
};

// Our fp32 arithmetic differs from transformers' fp32 run only in summation order (the fixtures
// keep every routing decision clear of ties), so its distance from the float64 reference must be
// of the same size: at most twice that of the fp32 transformers run.
TEST_P(MoeParity, EveryPositionInOneBatch) {
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    auto model = load_model(*source_, pool);
    ASSERT_EQ(model->config().vocab_size, ref_.vocab);
    const auto logits = all_logits(*model, ref_);
    EXPECT_LE(max_abs_diff(logits.data(), ref_.logits.data(), int64_t(logits.size())), 2 * ref_.fp32_error)
        << "threads " << threads;
  }
}

TEST_P(MoeParity, PrefillThenTokenByToken) {
  ThreadPool pool(2);
  auto model = load_model(*source_, pool);
  auto cache = model->new_cache(int64_t(ref_.tokens.size()));
  std::vector<float> logits(static_cast<size_t>(ref_.vocab));
  const size_t prefill = 37;
  model->forward(std::span(ref_.tokens).first(prefill), *cache, logits.data(), false);
  EXPECT_LE(max_abs_diff(logits.data(), ref_.row(int(prefill) - 1), ref_.vocab), 2 * ref_.fp32_error);
  for (size_t i = prefill; i < ref_.tokens.size(); ++i) {
    model->forward(std::span(ref_.tokens).subspan(i, 1), *cache, logits.data(), false);
    ASSERT_LE(max_abs_diff(logits.data(), ref_.row(int(i)), ref_.vocab), 2 * ref_.fp32_error) << "position " << i;
  }
}

// Several sequences of one cache, each a different prefix of the reference tokens, decode together:
// one step routes tokens of different sequences to the experts at once.
TEST_P(MoeParity, BatchedDecodeOfSeveralSequences) {
  ThreadPool pool(2);
  auto model = load_model(*source_, pool);
  const std::vector<size_t> prefixes = {20, 33, 47, 61};
  const int batch = int(prefixes.size());
  auto cache = model->new_cache(int64_t(ref_.tokens.size()), batch);
  std::vector<float> logits(size_t(batch) * size_t(ref_.vocab));
  std::vector<size_t> length = prefixes;
  for (int s = 0; s < batch; ++s)
    model->forward_sequence(s, std::span(ref_.tokens).first(prefixes[size_t(s)]), *cache, logits.data(), false);
  for (int step = 0; step < 30; ++step) {
    std::vector<int32_t> seqs, tokens;
    for (int s = 0; s < batch; ++s) {
      if ((step + s) % 4 == 3) continue;  // each step leaves one sequence out
      seqs.push_back(s);
      tokens.push_back(ref_.tokens[length[size_t(s)]]);
    }
    model->decode_sequences(seqs, tokens, *cache, logits.data());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const size_t position = length[size_t(seqs[i])]++;
      ASSERT_LE(max_abs_diff(&logits[i * size_t(ref_.vocab)], ref_.row(int(position)), ref_.vocab),
                2 * ref_.fp32_error)
          << "step " << step << " sequence " << seqs[i];
    }
  }
}

// The tolerance is tight enough to notice the wrong renormalization rule.
TEST_P(MoeParity, WrongRenormalizationIsNoticed) {
  MoeRouting routing = source_->config().moe.routing;
  routing.renormalize = !routing.renormalize;
  AlteredRouting altered(*source_, routing);
  ThreadPool pool(2);
  auto model = load_model(altered, pool);
  const auto logits = all_logits(*model, ref_);
  EXPECT_GT(max_abs_diff(logits.data(), ref_.logits.data(), int64_t(logits.size())), 100 * ref_.fp32_error);
}

INSTANTIATE_TEST_SUITE_P(Variants, MoeParity,
                         ::testing::Values(Checkpoint{"tiny_mixtral", "tiny_mixtral"},
                                           Checkpoint{"tiny_mixtral.gguf", "tiny_mixtral"},
                                           Checkpoint{"tiny_qwen3_moe", "tiny_qwen3_moe"},
                                           Checkpoint{"tiny_qwen3_moe_norm", "tiny_qwen3_moe_norm"},
                                           Checkpoint{"tiny_qwen3_moe_norm.gguf", "tiny_qwen3_moe_norm"}));

// Qwen3-MoE: a dense layer by mlp_only_layers (decoder_sparse_step: test_moe_config.cpp),
// norm_topk_prob both ways, and the dense layer's MLP as ordinary linear groups.
TEST(TinyQwen3Moe, ConfigAndLinearGroups) {
  auto source = open_model_source(kDir + "/tiny_qwen3_moe");
  const ModelConfig& c = source->config();
  EXPECT_EQ(c.architecture, "qwen3moe");
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.moe.n_experts, 8);
  EXPECT_EQ(c.moe.routing.top_k, 2);
  EXPECT_FALSE(c.moe.routing.renormalize);
  EXPECT_EQ(c.moe.d_expert_ffn, 32);
  EXPECT_EQ(c.d_ffn, 96);
  EXPECT_EQ(c.moe.sparse_layers, (std::vector<bool>{true, false, true}));
  ThreadPool pool(1);
  auto model = load_model(*source, pool);
  EXPECT_EQ(model->linear_groups(0).size(), size_t(3 + 2 * 8));
  const auto dense = model->linear_groups(1);
  ASSERT_EQ(dense.size(), 4u);
  EXPECT_EQ(dense[2].weights, (std::vector<std::string>{"model.layers.1.mlp.gate_proj.weight",
                                                        "model.layers.1.mlp.up_proj.weight"}));

  auto norm = open_model_source(kDir + "/tiny_qwen3_moe_norm");
  EXPECT_TRUE(norm->config().moe.routing.renormalize);
  EXPECT_TRUE(norm->config().moe.sparse(0) && norm->config().moe.sparse(1));
}

// llama.cpp's layout: the router is ffn_gate_inp, each layer's experts are 3-D tensors; every
// expert's matrix comes out under its Hugging Face name (Mixtral's or Qwen's, by the file's
// architecture) with the checkpoint's values.
TEST(MoeGguf, ExpertTensorsSplitByExpert) {
  for (const std::string name : {"tiny_mixtral", "tiny_qwen3_moe_norm"}) {
    SCOPED_TRACE(name);
    auto gguf = open_model_source(kDir + "/" + name + ".gguf");
    auto hf = open_model_source(kDir + "/" + name);
    const MoeConfig& m = gguf->config().moe;
    EXPECT_EQ(m.n_experts, hf->config().moe.n_experts);
    EXPECT_EQ(m.routing.top_k, hf->config().moe.routing.top_k);
    EXPECT_EQ(m.routing.renormalize, hf->config().moe.routing.renormalize);
    EXPECT_EQ(m.d_expert_ffn, hf->config().moe.d_expert_ffn);
    auto names = gguf->tensor_names(), hf_names = hf->tensor_names();
    std::sort(names.begin(), names.end());
    std::sort(hf_names.begin(), hf_names.end());
    EXPECT_EQ(names, hf_names);
    int compared = 0;
    for (const std::string& n : names) {
      if (n.find(".experts.") == std::string::npos && !n.ends_with(".gate.weight")) continue;
      const auto a = gguf->tensor(n), b = hf->tensor(n);
      ASSERT_TRUE(a && b) << n;
      ASSERT_EQ(a->rows, b->rows) << n;
      ASSERT_EQ(a->cols, b->cols) << n;
      for (int64_t r = 0; r < a->rows; ++r)
        ASSERT_EQ(std::memcmp(a->codes + uint64_t(r) * a->code_row_bytes, b->codes + uint64_t(r) * b->code_row_bytes,
                              size_t(a->cols) * 4),
                  0)
            << n << " row " << r;
      ++compared;
    }
    EXPECT_EQ(compared, 2 * (1 + 3 * 8));  // 2 layers: the router and 3 matrices per expert
  }
  auto gguf = open_model_source(kDir + "/tiny_mixtral.gguf");
  EXPECT_FALSE(gguf->tensor("model.layers.0.block_sparse_moe.experts.8.w1.weight"));
  EXPECT_FALSE(gguf->tensor("model.layers.0.block_sparse_moe.experts.1.w4.weight"));
  EXPECT_FALSE(gguf->tensor("model.layers.0.block_sparse_moe.experts.x.w1.weight"));
  EXPECT_FALSE(gguf->tensor("model.layers.0.mlp.experts.1.gate_proj.weight"));  // Qwen's names, Mixtral's file
  // Written back as a config.json, the Mixtral is a Mixtral again.
  const auto j = gguf->hf_config();
  EXPECT_EQ(j["architectures"][0], "MixtralForCausalLM");
  EXPECT_EQ(j["num_local_experts"], 8);
}

TEST(TinyMixtral, ConfigFromTheCheckpoint) {
  auto source = open_model_source(kDir + "/tiny_mixtral");
  const ModelConfig& c = source->config();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.moe.n_experts, 8);
  EXPECT_EQ(c.moe.routing.top_k, 2);
  EXPECT_TRUE(c.moe.routing.renormalize);
  EXPECT_EQ(c.moe.d_expert_ffn, 32);
  EXPECT_TRUE(c.moe.sparse(0) && c.moe.sparse(1));
}

// Layer by layer (marlin quantize's calibration path): the router and every chosen expert's
// gate/up and down report their inputs, and the hidden states come out as forward computes them.
TEST(TinyMixtral, LayerByLayerReportsEachExpertsTokens) {
  const auto ref = testing::load_reference(kDir, "tiny_mixtral");
  auto source = open_model_source(kDir + "/tiny_mixtral");
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const auto& c = model->config();
  const int64_t n = 24, experts = c.moe.n_experts;
  std::vector<float> x(static_cast<size_t>(n * c.d_model));
  model->embed(std::span(ref.tokens).first(n), x.data());
  auto cache = model->new_cache(n);
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const auto groups = model->linear_groups(layer);
    ASSERT_EQ(groups.size(), size_t(3 + 2 * experts));  // qkv, o, router, then gate+up and down per expert
    EXPECT_EQ(groups[2].weights, std::vector<std::string>{"model.layers." + std::to_string(layer) +
                                                          ".block_sparse_moe.gate.weight"});
    EXPECT_EQ(groups[3].weights.size(), 2u);
    std::vector<int64_t> rows(groups.size(), 0), cols(groups.size(), 0);
    cache->clear();
    model->run_layer(layer, x.data(), n, *cache, [&](int group, const float*, int64_t r, int64_t k) {
      rows[size_t(group)] += r;
      cols[size_t(group)] = k;
    });
    EXPECT_EQ(rows[2], n);
    int64_t routed = 0;
    for (int64_t e = 0; e < experts; ++e) {
      const size_t g = size_t(3 + 2 * e);
      EXPECT_EQ(rows[g], rows[g + 1]) << "expert " << e;
      if (rows[g] == 0) continue;
      EXPECT_EQ(cols[g], c.d_model);
      EXPECT_EQ(cols[g + 1], c.moe.d_expert_ffn);
      routed += rows[g];
    }
    EXPECT_EQ(routed, n * c.moe.routing.top_k);
  }
  const auto norm = require_vector(*source, "model.norm.weight", c.d_model);
  const auto lm_head = require_matrix(*source, "lm_head.weight", c.vocab_size, c.d_model);
  std::vector<float> h(x.size()), logits(static_cast<size_t>(n) * size_t(ref.vocab));
  for (int64_t t = 0; t < n; ++t)
    cpu::rms_norm(&x[size_t(t * c.d_model)], norm.data(), c.rms_eps, c.d_model, &h[size_t(t * c.d_model)]);
  cpu::matmul(lm_head, h.data(), n, logits.data(), pool);
  EXPECT_LE(max_abs_diff(logits.data(), ref.logits.data(), n * ref.vocab), 2 * ref.fp32_error);

  // Experts' weights are replaceable by name; a wrong shape is refused.
  const std::string w1 = "model.layers.1.block_sparse_moe.experts.3.w1.weight";
  model->replace_weight(w1, *source->tensor(w1));
  EXPECT_THROW(model->replace_weight("model.layers.1.block_sparse_moe.experts.3.w2.weight", *source->tensor(w1)),
               Error);
}

// Experts quantized to int4-g32 (marlin's RTN), run on the int4 kernels.
class QuantizedMixtral : public ::testing::Test {
 protected:
  void SetUp() override {
    ref_ = testing::load_reference(kDir, "tiny_mixtral_int4");
    source_ = open_model_source(kDir + "/tiny_mixtral");
    model_ = load_model(*source_, pool_);
    const ModelConfig& c = model_->config();
    for (const std::string& name : source_->tensor_names()) {
      if (name.find(".experts.") == std::string::npos) continue;
      const QuantTensor t = *source_->tensor(name);
      std::vector<float> w(static_cast<size_t>(t.rows * t.cols));
      for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, r, &w[size_t(r * t.cols)]);
      quantized_.push_back(quantize_rtn(w.data(), t.rows, t.cols, TensorFormat::parse("int4-g32")));
      model_->replace_weight(name, quantized_.back().view());
    }
    ASSERT_EQ(quantized_.size(), size_t(c.n_layers * c.moe.n_experts * 3));
  }
  ThreadPool pool_{2};
  testing::ReferenceLogits ref_;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Model> model_;
  std::vector<QuantBuffers> quantized_;
};

// With exact activations the int4 weights are the only approximation, and the reference rounds
// the same weights to the same grid: fp32 rounding is the only difference left.
TEST_F(QuantizedMixtral, ExactActivationsMatchTheReferenceOnTheSameGrid) {
  cpu::set_exact_activations(true);
  const auto logits = all_logits(*model_, ref_);
  cpu::set_exact_activations(false);
  EXPECT_LE(max_abs_diff(logits.data(), ref_.logits.data(), int64_t(logits.size())), 2 * ref_.fp32_error);
}

// The fast int4 kernels quantize activations to 8 bits: their distance from the reference must
// stay far below what quantizing the experts to 4 bits moved the logits.
TEST_F(QuantizedMixtral, FastKernelsStayCloseToTheReference) {
  const auto full = testing::load_reference(kDir, "tiny_mixtral");
  double int4_effect = 0;
  for (size_t i = 0; i < ref_.logits.size(); ++i)
    int4_effect = std::max(int4_effect, std::abs(ref_.logits[i] - full.logits[i]));
  const auto logits = all_logits(*model_, ref_);
  const double err = max_abs_diff(logits.data(), ref_.logits.data(), int64_t(logits.size()));
  std::cout << "int4 experts: fast kernels " << err << " from the reference, int4 moved logits by " << int4_effect
            << "\n";
  EXPECT_LE(err, 0.1 * int4_effect);
  int same = 0;
  for (int p = 0; p < ref_.positions; ++p)
    same += std::max_element(&logits[size_t(p) * ref_.vocab], &logits[size_t(p + 1) * ref_.vocab]) -
                &logits[size_t(p) * ref_.vocab] ==
            ref_.argmax[size_t(p)];
  EXPECT_GE(same, ref_.positions * 95 / 100);
}

}  // namespace
}  // namespace marlin
