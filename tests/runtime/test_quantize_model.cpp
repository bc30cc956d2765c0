// Whole-model quantization of a tiny Llama checkpoint: formats chosen by the rules, Q/K rows moved
// to the Hugging Face layout, RTN and GPTQ, judged by how far the result's logits move.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "model/model.h"
#include "model/model_source.h"
#include "quant/quant_buffers.h"
#include "runtime/evaluation.h"
#include "runtime/quantize_model.h"
#include "tokenizer/tokenizer.h"
#include "../model/reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

QuantBuffers copy_of(const QuantTensor& t) {
  QuantBuffers b = QuantBuffers::allocate(t.format, t.rows, t.cols);
  b.codes.assign(t.codes, t.codes + b.codes.size());
  if (t.scales) b.scales.assign(t.scales, t.scales + b.scales.size());
  if (t.zeros) b.zeros.assign(t.zeros, t.zeros + b.zeros.size());
  if (t.sparse_meta) b.sparse_meta.assign(t.sparse_meta, t.sparse_meta + b.sparse_meta.size());
  if (t.perm) b.perm.assign(t.perm, t.perm + t.cols);
  b.tensor_scale = t.tensor_scale;
  b.rotation_seed = t.rotation_seed;
  return b;
}

// What quantize_model wrote, as a source in the Hugging Face layout.
class MemorySource final : public ModelSource {
 public:
  MemorySource(ModelConfig config, std::map<std::string, QuantBuffers> tensors)
      : config_(std::move(config)), tensors_(std::move(tensors)) {
    if (!config_.mla.enabled()) config_.rope.pairing = RopePairing::kHalfSplit;  // MLA rows stay as stored
  }
  const ModelConfig& config() const override { return config_; }
  std::unique_ptr<Tokenizer> tokenizer() const override { return nullptr; }
  std::string chat_template() const override { return {}; }
  std::optional<QuantTensor> tensor(std::string_view name) const override {
    auto it = tensors_.find(std::string(name));
    if (it == tensors_.end()) return std::nullopt;
    return it->second.view();
  }
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const auto& [name, t] : tensors_) names.push_back(name);
    return names;
  }
  std::string description() const override { return "memory"; }
  nlohmann::json hf_config() const override { return {}; }
  std::string tokenizer_json() const override { return {}; }
  std::string tokenizer_config_json() const override { return {}; }

 private:
  ModelConfig config_;
  std::map<std::string, QuantBuffers> tensors_;
};

struct Quantized {
  std::unique_ptr<MemorySource> source;
  QuantizeReport report;
};

Quantized quantize(const ModelSource& source, QuantizeOptions options, ThreadPool& pool) {
  std::map<std::string, QuantBuffers> out;
  auto report = quantize_model(source, options, pool, [&](const std::string& name, const QuantTensor& t) {
    EXPECT_EQ(out.count(name), 0u) << name << " written twice";
    out.emplace(name, copy_of(t));
  });
  return {std::make_unique<MemorySource>(source.config(), std::move(out)), std::move(report)};
}

// Calibration sequences other than the ones the KL is measured on: 8 × 64 tiny_llama token ids.
std::vector<std::vector<int32_t>> calibration_tokens() {
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < 8; ++s) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 64; ++i) tokens.push_back(int32_t((s * 131 + i * 17 + i * i) % 128));
    out.push_back(tokens);
  }
  return out;
}

class QuantizeModel : public ::testing::Test {
 protected:
  void SetUp() override {
    ref_ = testing::load_reference(kDir, "tiny_llama");
    source_ = open_model_source(kDir + "/tiny_llama.gguf");
  }
  // KL of `model` from the original over the reference tokens (ctx 100: one chunk, 50 scored).
  double kl_from_original(const ModelSource& quantized) {
    auto a = load_model(*source_, pool_), b = load_model(quantized, pool_);
    EvaluationOptions options;
    options.ctx = 100;
    return compare_models(*a, *b, ref_.tokens, options).mean_kl;
  }
  testing::ReferenceLogits ref_;
  std::unique_ptr<ModelSource> source_;
  ThreadPool pool_{2};
};

TEST_F(QuantizeModel, KeepingEverythingChangesNothingButTheQkLayout) {
  auto q = quantize(*source_, {}, pool_);
  EXPECT_EQ(q.report.tensors.size(), source_->tensor_names().size());
  // Same weights, Q/K rows in the Hugging Face order, half-split RoPE: the same logits.
  auto model = load_model(*q.source, pool_);
  auto cache = model->new_cache(int64_t(ref_.tokens.size()));
  std::vector<float> logits(ref_.tokens.size() * size_t(ref_.vocab));
  model->forward(ref_.tokens, *cache, logits.data(), true);
  for (size_t i = 0; i < logits.size(); ++i) ASSERT_NEAR(logits[i], ref_.logits[i], 2 * ref_.fp32_error) << i;
}

TEST_F(QuantizeModel, RulesPickEachTensorsFormat) {
  QuantizeOptions options;
  options.format = TensorFormat::parse("int4-g32");
  options.rules = parse_quant_rules("*.mlp.down_proj.weight=int8-pc, layers.1.self_attn=keep");
  auto q = quantize(*source_, options, pool_);
  auto format_of = [&](const std::string& name) { return q.source->tensor(name)->format.name(); };
  EXPECT_EQ(format_of("model.layers.0.mlp.up_proj.weight"), "int4-g32");
  EXPECT_EQ(format_of("model.layers.0.mlp.down_proj.weight"), "int8-pc");
  EXPECT_EQ(format_of("model.layers.1.self_attn.q_proj.weight"), "f32");
  EXPECT_EQ(format_of("model.layers.0.input_layernorm.weight"), "f32");  // vectors stay
  EXPECT_EQ(format_of("model.embed_tokens.weight"), "int8-g32");         // 8 bits for embeddings
  EXPECT_EQ(format_of("lm_head.weight"), "int8-g32");
  EXPECT_LT(kl_from_original(*q.source), 0.05);
}

TEST_F(QuantizeModel, GptqMovesLogitsLessThanRtn) {
  QuantizeOptions options;
  options.format = TensorFormat::parse("int3-g32");
  options.rules = parse_quant_rules("embed_tokens=keep,lm_head=keep");
  const double rtn = kl_from_original(*quantize(*source_, options, pool_).source);
  options.gptq = true;
  // Calibrate on other token sequences than the ones the KL is measured on.
  options.calibration = calibration_tokens();
  auto q = quantize(*source_, options, pool_);
  const double gptq = kl_from_original(*q.source);
  EXPECT_LT(gptq, rtn);
  int calibrated = 0;
  for (const auto& t : q.report.tensors) calibrated += t.gptq_loss >= 0;
  EXPECT_EQ(calibrated, 2 * 7);  // every linear of both blocks
  std::cout << "KL from the original: RTN " << rtn << ", GPTQ " << gptq << "\n";
}

// Trellis with the calibration Hessians (rotation, LDLQ, tiles) against trellis without them, and
// against GPTQ int3-g32 (3.5 bits per weight with its scales; issue 7 asks trellis at 3 bits to beat
// GPTQ int3). Q/K rows come from a
// GGUF (adjacent-pair layout), so the checkpoint's rows differ from the model's order.
TEST_F(QuantizeModel, TrellisWithHessiansMovesLogitsLessThanWithout) {
  QuantizeOptions options;
  options.format = TensorFormat::parse("trellis3");
  options.rules = parse_quant_rules("embed_tokens=keep,lm_head=keep");
  const double rtn = kl_from_original(*quantize(*source_, options, pool_).source);
  options.gptq = true;
  options.calibration = calibration_tokens();
  auto q = quantize(*source_, options, pool_);
  const double ldlq = kl_from_original(*q.source);
  int calibrated = 0;
  for (const auto& t : q.report.tensors) {
    calibrated += t.gptq_loss >= 0;
    if (t.gptq_loss >= 0) EXPECT_EQ(t.format.name(), "trellis3") << t.name;
  }
  EXPECT_EQ(calibrated, 2 * 7);  // every linear of both blocks
  EXPECT_LT(ldlq, rtn);
  options.format = TensorFormat::parse("int3-g32");
  const double gptq = kl_from_original(*quantize(*source_, options, pool_).source);
  EXPECT_LT(ldlq, gptq);
  std::cout << "KL from the original: trellis3 " << rtn << ", trellis3 + LDLQ " << ldlq << ", GPTQ int3-g32 " << gptq
            << "\n";
}

// The linears that read one input (q, k, v; gate, up) are quantized as one trellis stack where the
// memory allows it, else one by one: the same tensors either way.
TEST_F(QuantizeModel, TrellisStacksWithinTheirBudgetAndGiveTheSameTensors) {
  QuantizeOptions options;
  options.format = TensorFormat::parse("trellis3");
  options.rules = parse_quant_rules("embed_tokens=keep,lm_head=keep");
  options.gptq = true;
  options.calibration = calibration_tokens();
  options.trellis_stack_budget = UINT64_MAX;
  auto stacked = quantize(*source_, options, pool_);
  EXPECT_EQ(stacked.report.trellis_stacks, 2 * source_->config().n_layers);  // q|k|v and gate|up per block
  options.trellis_stack_budget = 0;
  auto alone = quantize(*source_, options, pool_);
  EXPECT_EQ(alone.report.trellis_stacks, 0);
  for (const auto& name : stacked.source->tensor_names()) {
    const QuantTensor a = *stacked.source->tensor(name), b = *alone.source->tensor(name);
    ASSERT_EQ(a.format, b.format) << name;
    const QuantBuffers ca = copy_of(a), cb = copy_of(b);
    EXPECT_EQ(ca.codes, cb.codes) << name;
    EXPECT_EQ(ca.scales, cb.scales) << name;
  }
}

// Every linear of the blocks in trellis4 without calibration (tiles alone): its weight MSE (0.0045
// of the variance, tests/quant/test_trellis_matrix.cpp) is about 2/3 of int4-g32 RTN's on
// Gaussian-like weights (≈ step²/12 with step ≈ 2·absmax/15; 4.5 bits with its scales), and KL
// grows with the weight error, so trellis4 must not move the logits more than int4-g32 does.
TEST_F(QuantizeModel, Trellis4MovesLogitsLessThanInt4) {
  QuantizeOptions options;
  options.format = TensorFormat::parse("trellis4");
  options.rules = parse_quant_rules("embed_tokens=keep,lm_head=keep");
  auto q = quantize(*source_, options, pool_);
  int trellis = 0;
  for (const auto& t : q.report.tensors) trellis += t.format.kind == FormatKind::kTrellis;
  EXPECT_EQ(trellis, 7 * source_->config().n_layers);
  // Weights that read one input (the runtime stacks them) share the input rotation's seed.
  for (int layer = 0; layer < source_->config().n_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const auto seed = [&](const std::string& name) { return q.source->tensor(p + name)->rotation_seed; };
    EXPECT_EQ(seed("self_attn.k_proj.weight"), seed("self_attn.q_proj.weight"));
    EXPECT_EQ(seed("self_attn.v_proj.weight"), seed("self_attn.q_proj.weight"));
    EXPECT_EQ(seed("mlp.up_proj.weight"), seed("mlp.gate_proj.weight"));
    EXPECT_NE(seed("self_attn.o_proj.weight"), seed("self_attn.q_proj.weight"));
    EXPECT_NE(seed("mlp.down_proj.weight"), seed("mlp.gate_proj.weight"));
    EXPECT_NE(seed("mlp.gate_proj.weight"), seed("self_attn.q_proj.weight"));
  }
  const double t4 = kl_from_original(*q.source);
  options.format = TensorFormat::parse("int4-g32");
  const double i4 = kl_from_original(*quantize(*source_, options, pool_).source);
  std::cout << "KL from the original: trellis4 " << t4 << ", int4-g32 " << i4 << "\n";
  EXPECT_LT(t4, i4);
  EXPECT_LT(t4, 0.05);  // the bound the int4 whole-model tests use
}

TEST_F(QuantizeModel, ActOrderNeedsGptq) {
  QuantizeOptions options;
  options.format = TensorFormat::parse("int4-g32-act");
  EXPECT_THROW(quantize(*source_, options, pool_), Error);
}

// A mixture-of-experts model: the routers stay as stored, every expert's gate/up and down are
// calibrated on the tokens routed to it (RTN for an expert no calibration token chose), and GPTQ
// moves the logits less than RTN.
TEST(QuantizeMoe, GptqCalibratesEachExpertOnItsTokens) {
  ThreadPool pool(2);
  auto source = open_model_source(kDir + "/tiny_mixtral");
  const auto ref = testing::load_reference(kDir, "tiny_mixtral");
  auto kl = [&](const ModelSource& quantized) {
    auto a = load_model(*source, pool), b = load_model(quantized, pool);
    EvaluationOptions options;
    options.ctx = 100;
    return compare_models(*a, *b, ref.tokens, options).mean_kl;
  };
  QuantizeOptions options;
  options.format = TensorFormat::parse("int3-g32");
  options.rules = parse_quant_rules("embed_tokens=keep,lm_head=keep");
  const double rtn = kl(*quantize(*source, options, pool).source);
  options.gptq = true;
  options.calibration = calibration_tokens();
  auto q = quantize(*source, options, pool);
  EXPECT_EQ(q.report.tensors.size(), source->tensor_names().size());
  EXPECT_EQ(q.source->tensor("model.layers.0.block_sparse_moe.gate.weight")->format.name(), "f32");
  EXPECT_EQ(q.source->tensor("model.layers.1.block_sparse_moe.experts.7.w2.weight")->format.name(), "int3-g32");
  int calibrated = 0;
  for (const auto& t : q.report.tensors) calibrated += t.gptq_loss >= 0 && t.name.find(".experts.") != std::string::npos;
  EXPECT_GT(calibrated, 2 * 8 * 3 / 2);  // most experts saw calibration tokens
  const double gptq = kl(*q.source);
  EXPECT_LT(gptq, rtn);
  std::cout << "MoE KL from the original: RTN " << rtn << ", GPTQ " << gptq << " (" << calibrated
            << " expert linears calibrated)\n";
}

// DeepSeek-V2/V3 and GLM-4.7-Flash: GPTQ runs layer by layer through MLA and the sparse layers
// (routed experts on their tokens, the shared experts on every token), and the quantized model
// runs, closer to the original than with RTN (int3-g32 as for Mixtral above: at 4 bits the tiny
// DeepSeek-V3's attention came out slightly worse with GPTQ than with RTN, a difference within
// the noise of 512 calibration tokens). q_b_proj (48 and 40 columns) and the absorbed kv_b_proj
// stay as stored. MLA checkpoints keep their adjacent RoPE pairs (MemorySource above).
TEST(QuantizeMoe, GptqCalibratesDeepseekAndGlm) {
  ThreadPool pool(2);
  for (const char* name : {"tiny_deepseek_v3", "tiny_deepseek_v2", "tiny_glm4_moe_lite"}) {
    auto source = open_model_source(kDir + "/" + name);
    const auto ref = testing::load_reference(kDir, name);
    auto kl = [&](const ModelSource& quantized) {
      auto a = load_model(*source, pool), b = load_model(quantized, pool);
      EvaluationOptions options;
      options.ctx = 100;
      return compare_models(*a, *b, ref.tokens, options).mean_kl;
    };
    QuantizeOptions options;
    options.format = TensorFormat::parse("int3-g32");
    options.rules = parse_quant_rules("embed_tokens=keep,lm_head=keep,q_b_proj=keep,kv_b_proj=keep");
    const double rtn = kl(*quantize(*source, options, pool).source);
    options.gptq = true;
    for (int s = 0; s < 8; ++s) {
      std::vector<int32_t> tokens;
      for (int i = 0; i < 64; ++i) tokens.push_back(int32_t((s * 131 + i * 17 + i * i) % 128));
      options.calibration.push_back(tokens);
    }
    auto q = quantize(*source, options, pool);
    EXPECT_EQ(q.report.tensors.size(), source->tensor_names().size()) << name;
    EXPECT_EQ(q.source->tensor("model.layers.1.mlp.gate.weight")->format.name(), "f32") << name;
    int experts = 0, shared = 0;
    for (const auto& t : q.report.tensors) {
      experts += t.gptq_loss >= 0 && t.name.find(".mlp.experts.") != std::string::npos;
      shared += t.gptq_loss >= 0 && t.name.find(".mlp.shared_experts.") != std::string::npos;
    }
    EXPECT_GT(experts, 8 * 3 / 2) << name;  // most experts saw calibration tokens
    EXPECT_EQ(shared, 3) << name;           // the shared experts see every token
    const double gptq = kl(*q.source);
    EXPECT_LT(gptq, rtn) << name;
    std::cout << name << " KL from the original: RTN " << rtn << ", GPTQ " << gptq << " (" << experts
              << " expert linears calibrated)\n";
  }
}

TEST(QuantRules, Parse) {
  auto rules = parse_quant_rules("  embed_tokens = int8-pc # 8 bits\nlm_head=keep,,*.down_proj.*=int4-g64");
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].pattern, "embed_tokens");
  EXPECT_EQ(rules[0].format->name(), "int8-pc");
  EXPECT_FALSE(rules[1].format.has_value());
  EXPECT_TRUE(rule_matches(rules[2], "model.layers.3.mlp.down_proj.weight"));
  EXPECT_FALSE(rule_matches(rules[2], "model.layers.3.mlp.up_proj.weight"));
  EXPECT_TRUE(rule_matches(rules[0], "model.embed_tokens.weight"));
  EXPECT_THROW(parse_quant_rules("nonsense"), Error);
  EXPECT_THROW(parse_quant_rules("x=int5"), Error);
  EXPECT_THROW(parse_quant_rules("=int4"), Error);
}

}  // namespace
}  // namespace marlin
