#include "model/mixtral.h"

#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "model/moe_block.h"
#include "model/weights.h"

namespace marlin {
namespace {

class MixtralModel final : public MoeDecoderModel {
 public:
  MixtralModel(const ModelSource& source, std::unique_ptr<Backend> backend)
      : MoeDecoderModel(source, std::move(backend), source.config()) {
    const ModelConfig& c = config_;
    MARLIN_CHECK(c.moe.n_experts > 0 && c.moe.sparse_layers.empty(), "mixtral: every layer must be sparse");
    const int64_t d = c.d_model;
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[size_t(i)];
      l.attn_norm = be_->vector(require_vector(source, p + "input_layernorm.weight", d));
      l.ffn_norm = be_->vector(require_vector(source, p + "post_attention_layernorm.weight", d));
      l.attention = add_gqa_attention(i, source, false);
      // Published checkpoints (and transformers' save_pretrained) name the experts w1 (gate),
      // w3 (up) and w2 (down) under block_sparse_moe.
      SparseMlpNames names{p + "block_sparse_moe.gate.weight", {}, ""};
      for (int e = 0; e < c.moe.n_experts; ++e) {
        const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
        names.experts.push_back({x + "w1.weight", x + "w3.weight", x + "w2.weight"});
      }
      l.mlp = add_sparse_mlp(i, source, std::move(names));
    }
  }

 private:
  enum Slot : int { kDelta = kFirstBlockSlot, kRouterLogits };

  struct Layer {
    std::unique_ptr<BackendTensor> attn_norm, ffn_norm;
    GqaAttention attention;
    SparseMlp mlp;
  };

  const BackendTensor& input_norm(int layer) const override { return *layers_[size_t(layer)].attn_norm; }

  void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
             const BackendTensor* next_norm) override {
    const Layer& l = layers_[size_t(li)];
    const Act delta = be_->activations(kDelta, x.rows, config_.d_model, ActType::kF16);
    gqa_attention(li, l.attention, h, delta, cache, observer, 0);
    be_->add_rms_norm(x, delta, *l.ffn_norm, config_.rms_eps, h);
    sparse_mlp(l.mlp, h, delta, kRouterLogits, observer);
    residual_add(x, delta, h, next_norm);
  }

  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_mixtral(const ModelSource& source, std::unique_ptr<Backend> backend) {
  return std::make_unique<MixtralModel>(source, std::move(backend));
}

}  // namespace marlin
