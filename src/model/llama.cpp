#include "model/llama.h"

#include <string>
#include <utility>
#include <vector>

#include "model/decoder.h"
#include "model/weights.h"

namespace marlin {
namespace {

class LlamaModel final : public DecoderModel {
 public:
  LlamaModel(const ModelSource& source, std::unique_ptr<Backend> backend)
      : DecoderModel(source, std::move(backend), source.config()) {
    const ModelConfig& c = config_;
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[size_t(i)];
      l.attn_norm = be_->vector(require_vector(source, p + "input_layernorm.weight", c.d_model));
      l.ffn_norm = be_->vector(require_vector(source, p + "post_attention_layernorm.weight", c.d_model));
      l.attention = add_gqa_attention(i, source, c.architecture == "qwen3");
      l.mlp = add_swiglu_mlp(i, source, "mlp.", c.d_ffn);
    }
  }

 private:
  enum Slot : int { kDelta = kFirstBlockSlot };

  struct Layer {
    std::unique_ptr<BackendTensor> attn_norm, ffn_norm;
    GqaAttention attention;
    SwigluMlp mlp;
  };

  const BackendTensor& input_norm(int layer) const override { return *layers_[size_t(layer)].attn_norm; }

  // Pre-norm block: RMSNorm → attention with RoPE (Qwen3: q and k heads normalized first) →
  // residual, RMSNorm → SwiGLU MLP → residual.
  void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
             const BackendTensor* next_norm) override {
    const Layer& l = layers_[size_t(li)];
    const Act delta = be_->activations(kDelta, x.rows, config_.d_model, ActType::kF16);
    gqa_attention(li, l.attention, h, delta, cache, observer, 0);
    be_->add_rms_norm(x, delta, *l.ffn_norm, config_.rms_eps, h);
    swiglu_mlp(l.mlp, h, delta, observer, 2);
    residual_add(x, delta, h, next_norm);
  }

  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_llama(const ModelSource& source, std::unique_ptr<Backend> backend) {
  return std::make_unique<LlamaModel>(source, std::move(backend));
}

}  // namespace marlin
