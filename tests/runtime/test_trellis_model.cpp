// A whole tiny Llama with every linear layer of its blocks in trellis4 (quantize_trellis_rtn),
// run end to end on the CPU backend: its logits must stay close to the unquantized model's, and
// closer than the same layers in int4-g32 RTN (4.5 bits/weight with its scales) move them.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "../model/reference.h"
#include "model/model.h"
#include "model/model_source.h"
#include "quant/dequant.h"
#include "quant/quant_buffers.h"
#include "quant/rtn.h"
#include "quant/trellis_matrix.h"
#include "runtime/evaluation.h"
#include "runtime/quantize_model.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

// The fixture's tensors in the Hugging Face layout (quantize_model keeping every format), with the
// 2-D weights of the blocks replaced by what `requantize` makes of their values.
class ReplacedSource final : public ModelSource {
 public:
  using Requantize = std::function<QuantBuffers(const std::vector<float>& w, int64_t rows, int64_t cols)>;
  ReplacedSource(const ModelSource& source, ThreadPool& pool, const Requantize& requantize) : config_(source.config()) {
    config_.rope.pairing = RopePairing::kHalfSplit;  // quantize_model writes the Hugging Face row order
    quantize_model(source, {}, pool, [&](const std::string& name, const QuantTensor& t) {
      std::vector<float> w(size_t(t.rows * t.cols));
      for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, r, w.data() + r * t.cols);
      if (name.starts_with("model.layers.") && t.rows > 1 && t.rows % 16 == 0 && t.cols % 16 == 0) {
        tensors_.emplace(name, requantize(w, t.rows, t.cols));
      } else {
        tensors_.emplace(name, quantize_rtn(w.data(), t.rows, t.cols, TensorFormat{FormatKind::kF32}));
      }
    });
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
  std::string description() const override { return "replaced"; }
  nlohmann::json hf_config() const override { return {}; }
  std::string tokenizer_json() const override { return {}; }
  std::string tokenizer_config_json() const override { return {}; }
  int count(FormatKind kind) const {
    int n = 0;
    for (const auto& [name, t] : tensors_) n += t.format.kind == kind;
    return n;
  }

 private:
  ModelConfig config_;
  std::map<std::string, QuantBuffers> tensors_;
};

TEST(TrellisModel, Trellis4LogitsStayCloseToTheOriginal) {
  ThreadPool pool(2);
  const auto ref = testing::load_reference(kDir, "tiny_llama");
  const auto source = open_model_source(kDir + "/tiny_llama.gguf");
  uint64_t seed = 0x5eed;
  const ReplacedSource trellis(*source, pool, [&](const std::vector<float>& w, int64_t rows, int64_t cols) {
    return quantize_trellis_rtn(w.data(), rows, cols, 4, seed++ * 0x9E3779B97F4A7C15ull, &pool);
  });
  EXPECT_EQ(trellis.count(FormatKind::kTrellis), 7 * source->config().n_layers);
  const ReplacedSource int4(*source, pool, [&](const std::vector<float>& w, int64_t rows, int64_t cols) {
    return quantize_rtn(w.data(), rows, cols, TensorFormat::parse("int4-g32"), {}, &pool);
  });
  auto original = load_model(*source, pool), t4 = load_model(trellis, pool), i4 = load_model(int4, pool);
  EvaluationOptions options;
  options.ctx = 100;
  const ComparisonResult a = compare_models(*original, *t4, ref.tokens, options);
  const ComparisonResult b = compare_models(*original, *i4, ref.tokens, options);
  std::printf("mean KL from the original: trellis4 %.5f, int4-g32 %.5f\n", a.mean_kl, b.mean_kl);
  // trellis4's weight MSE (0.0045 of the variance, tests/quant/test_trellis_matrix.cpp) is about
  // 2/3 of int4-g32 RTN's on Gaussian-like weights (≈ step²/12 with step ≈ 2·absmax/15), and KL
  // grows with the weight error, so trellis4 must not move the logits more than int4-g32 does.
  EXPECT_LT(a.mean_kl, b.mean_kl);
  EXPECT_LT(a.mean_kl, 0.05);  // the bound the int4 whole-model tests use (test_quantize_model.cpp)
}

}  // namespace
}  // namespace marlin
