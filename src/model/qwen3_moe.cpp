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
    const int64_t d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[size_t(i)];
      l.attn_norm = be_->vector(require_vector(source, p + "input_layernorm.weight", d));
      l.ffn_norm = be_->vector(require_vector(source, p + "post_attention_layernorm.weight", d));
      l.q_norm = be_->vector(require_vector(source, p + "self_attn.q_norm.weight", c.head_dim));
      l.k_norm = be_->vector(require_vector(source, p + "self_attn.k_norm.weight", c.head_dim));
      l.qkv = add_linear(i, source,
                         {{p + "self_attn.q_proj.weight", qd, d},
                          {p + "self_attn.k_proj.weight", kvd, d},
                          {p + "self_attn.v_proj.weight", kvd, d}});
      l.wo = add_linear(i, source, {{p + "self_attn.o_proj.weight", d, qd}});
      if (c.moe.sparse(i)) {
        SparseMlpNames names{p + "mlp.gate.weight", {}};
        for (int e = 0; e < c.moe.n_experts; ++e) {
          const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
          names.experts.push_back({x + "gate_proj.weight", x + "up_proj.weight", x + "down_proj.weight"});
        }
        l.mlp = add_sparse_mlp(i, source, std::move(names));
      } else {
        l.gate_up = add_linear(i, source,
                               {{p + "mlp.gate_proj.weight", c.d_ffn, d}, {p + "mlp.up_proj.weight", c.d_ffn, d}});
        l.down = add_linear(i, source, {{p + "mlp.down_proj.weight", d, c.d_ffn}});
      }
    }
  }

 private:
  enum Slot : int { kQkv = kFirstBlockSlot, kAttn, kDelta, kRouterLogits, kGateUp, kHidden };

  struct Layer {
    std::unique_ptr<BackendTensor> attn_norm, ffn_norm, q_norm, k_norm;
    const StackedLinear *qkv = nullptr, *wo = nullptr;
    SparseMlp mlp;                                           // sparse layers
    const StackedLinear *gate_up = nullptr, *down = nullptr;  // dense layers
  };

  const BackendTensor& input_norm(int layer) const override { return *layers_[size_t(layer)].attn_norm; }

  void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
             const BackendTensor* next_norm) override {
    const ModelConfig& c = config_;
    const int64_t n = x.rows, d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim;
    const int64_t kvd = int64_t(c.n_kv_heads) * c.head_dim;
    const Layer& l = layers_[size_t(li)];
    const Act qkv = be_->activations(kQkv, n, qd + 2 * kvd, ActType::kF16);
    const Act attn = be_->activations(kAttn, n, qd, ActType::kF16);
    const Act delta = be_->activations(kDelta, n, d, ActType::kF16);

    observe(observer, 0, h);
    be_->matmul(**l.qkv, h, qkv);
    be_->qk_norm(qkv, *l.q_norm, *l.k_norm, c.rms_eps);
    be_->rope_store_kv(qkv, cache, li);
    be_->attention(qkv, cache, li, attn);
    observe(observer, 1, attn);
    be_->matmul(**l.wo, attn, delta);
    be_->add_rms_norm(x, delta, *l.ffn_norm, c.rms_eps, h);
    if (l.gate_up) {
      const Act gate_up = be_->activations(kGateUp, n, 2 * c.d_ffn, ActType::kF16);
      const Act hidden = be_->activations(kHidden, n, c.d_ffn, ActType::kF16);
      observe(observer, 2, h);
      be_->matmul(**l.gate_up, h, gate_up);
      be_->silu_mul(gate_up, hidden);
      observe(observer, 3, hidden);
      be_->matmul(**l.down, hidden, delta);
    } else {
      sparse_mlp(l.mlp, h, delta, kRouterLogits, observer);
    }
    if (next_norm) {
      be_->add_rms_norm(x, delta, *next_norm, c.rms_eps, h);
    } else {
      be_->add(x, delta);
    }
  }

  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_qwen3_moe(const ModelSource& source, std::unique_ptr<Backend> backend) {
  return std::make_unique<Qwen3MoeModel>(source, std::move(backend));
}

}  // namespace marlin
