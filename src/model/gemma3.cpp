#include "model/gemma3.h"

#include <string>
#include <utility>
#include <vector>

#include "model/decoder.h"

namespace marlin {
namespace {

class Gemma3Model final : public DecoderModel {
 public:
  Gemma3Model(const ModelSource& source, std::unique_ptr<Backend> backend)
      : DecoderModel(source, std::move(backend), source.config()) {
    const ModelConfig& c = config_;
    const int64_t d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[size_t(i)];
      // Norm weights come with the config's offset (checkpoints store w and mean 1 + w).
      l.attn_norm = norm_weight(source, p + "input_layernorm.weight", d);
      l.post_attn_norm = norm_weight(source, p + "post_attention_layernorm.weight", d);
      l.ffn_norm = norm_weight(source, p + "pre_feedforward_layernorm.weight", d);
      l.post_ffn_norm = norm_weight(source, p + "post_feedforward_layernorm.weight", d);
      l.q_norm = norm_weight(source, p + "self_attn.q_norm.weight", c.head_dim);
      l.k_norm = norm_weight(source, p + "self_attn.k_norm.weight", c.head_dim);
      l.qkv = add_linear(i, source,
                         {{p + "self_attn.q_proj.weight", qd, d},
                          {p + "self_attn.k_proj.weight", kvd, d},
                          {p + "self_attn.v_proj.weight", kvd, d}});
      l.wo = add_linear(i, source, {{p + "self_attn.o_proj.weight", d, qd}});
      l.gate_up = add_linear(i, source, {{p + "mlp.gate_proj.weight", c.d_ffn, d}, {p + "mlp.up_proj.weight", c.d_ffn, d}});
      l.down = add_linear(i, source, {{p + "mlp.down_proj.weight", d, c.d_ffn}});
    }
  }

 private:
  enum Slot : int { kQkv = kFirstBlockSlot, kAttn, kDelta, kGateUp, kHidden };

  struct Layer {
    std::unique_ptr<BackendTensor> attn_norm, post_attn_norm, ffn_norm, post_ffn_norm, q_norm, k_norm;
    const StackedLinear *qkv, *wo, *gate_up, *down;
  };

  const BackendTensor& input_norm(int layer) const override { return *layers_[size_t(layer)].attn_norm; }

  // RMSNorm → attention (Q/K RMSNorm, the layer's RoPE and window) → RMSNorm → residual,
  // RMSNorm → GELU-tanh gated MLP → RMSNorm → residual.
  void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
             const BackendTensor* next_norm) override {
    const ModelConfig& c = config_;
    const int64_t n = x.rows, d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim;
    const int64_t kvd = int64_t(c.n_kv_heads) * c.head_dim;
    const Layer& l = layers_[size_t(li)];
    const Act qkv = be_->activations(kQkv, n, qd + 2 * kvd, ActType::kF16);
    const Act attn = be_->activations(kAttn, n, qd, ActType::kF16);
    const Act delta = be_->activations(kDelta, n, d, ActType::kF16);
    const Act gate_up = be_->activations(kGateUp, n, 2 * c.d_ffn, ActType::kF16);
    const Act hidden = be_->activations(kHidden, n, c.d_ffn, ActType::kF16);

    observe(observer, 0, h);
    be_->matmul(**l.qkv, h, qkv);
    be_->qk_norm_rope_store_kv(qkv, *l.q_norm, *l.k_norm, c.rms_eps, cache, li);
    be_->attention(qkv, cache, li, attn);
    observe(observer, 1, attn);
    be_->matmul(**l.wo, attn, delta);
    be_->rms_norm_rows(delta, *l.post_attn_norm, c.rms_eps);
    be_->add_rms_norm(x, delta, *l.ffn_norm, c.rms_eps, h);
    observe(observer, 2, h);
    be_->matmul(**l.gate_up, h, gate_up);
    be_->gelu_tanh_mul(gate_up, hidden);
    observe(observer, 3, hidden);
    be_->matmul(**l.down, hidden, delta);
    be_->rms_norm_rows(delta, *l.post_ffn_norm, c.rms_eps);
    if (next_norm) {
      be_->add_rms_norm(x, delta, *next_norm, c.rms_eps, h);
    } else {
      be_->add(x, delta);
    }
  }

  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_gemma3(const ModelSource& source, std::unique_ptr<Backend> backend) {
  return std::make_unique<Gemma3Model>(source, std::move(backend));
}

}  // namespace marlin
