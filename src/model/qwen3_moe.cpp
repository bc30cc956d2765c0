#include "model/qwen3_moe.h"

#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "model/moe_block.h"
#include "model/weights.h"

namespace marlin {
namespace {

class Qwen3MoeModel final : public MoeDecoderModel {
 public:
  Qwen3MoeModel(const ModelSource& source, std::unique_ptr<Backend> backend)
      : MoeDecoderModel(source, std::move(backend), source.config()) {
    const ModelConfig& c = config_;
    const int64_t d = c.d_model;
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[size_t(i)];
      l.attn_norm = be_->vector(require_vector(source, p + "input_layernorm.weight", d));
      l.ffn_norm = be_->vector(require_vector(source, p + "post_attention_layernorm.weight", d));
      l.attention = add_gqa_attention(i, source, true);
      if (c.moe.sparse(i)) {
        SparseMlpNames names{p + "mlp.gate.weight", {}, ""};
        for (int e = 0; e < c.moe.n_experts; ++e) {
          const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
          names.experts.push_back({x + "gate_proj.weight", x + "up_proj.weight", x + "down_proj.weight"});
        }
        l.mlp = add_sparse_mlp(i, source, std::move(names));
      } else {
        l.dense = add_swiglu_mlp(i, source, "mlp.", c.d_ffn);
      }
    }
  }

 private:
  enum Slot : int { kDelta = kFirstBlockSlot, kRouterLogits };

  struct Layer {
    std::unique_ptr<BackendTensor> attn_norm, ffn_norm;
    GqaAttention attention;
    SparseMlp mlp;   // sparse layers
    SwigluMlp dense;  // dense layers
  };

  const BackendTensor& input_norm(int layer) const override { return *layers_[size_t(layer)].attn_norm; }

  void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
             const BackendTensor* next_norm) override {
    const Layer& l = layers_[size_t(li)];
    const Act delta = be_->activations(kDelta, x.rows, config_.d_model, ActType::kF16);
    gqa_attention(li, l.attention, h, delta, cache, observer, 0);
    be_->add_rms_norm(x, delta, *l.ffn_norm, config_.rms_eps, h);
    if (l.dense.gate_up) {
      swiglu_mlp(l.dense, h, delta, observer, 2);
    } else {
      sparse_mlp(l.mlp, h, delta, kRouterLogits, observer);
    }
    residual_add(x, delta, h, next_norm);
  }

  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_qwen3_moe(const ModelSource& source, std::unique_ptr<Backend> backend) {
  return std::make_unique<Qwen3MoeModel>(source, std::move(backend));
}

}  // namespace marlin
