#include "model/deepseek.h"

#include <string>
#include <utility>
#include <vector>

#include "model/moe_block.h"
#include "model/weights.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

// The source's config with the shared experts placed: a shared MLP of the experts' width
// (n_shared_experts = 1) runs as one more expert inside the moe op, a wider one as a dense MLP.
ModelConfig checked_config(const ModelSource& source) {
  ModelConfig c = source.config();
  MARLIN_CHECK(c.mla.enabled(), "model: {} without kv_lora_rank is not an MLA model", c.architecture);
  MoeConfig& m = c.moe;
  if (m.n_experts > 0) {
    MARLIN_CHECK(m.d_expert_ffn > 0 && m.d_shared_ffn >= 0, "model: experts {} wide with shared experts {} wide",
                 m.d_expert_ffn, m.d_shared_ffn);
    m.routing.n_shared = m.d_shared_ffn == m.d_expert_ffn ? 1 : 0;
  }
  return c;
}

// kv_b_proj as fp32 values (mla_attention reads it per head, absorbed into the query and output).
std::vector<float> dequantized(const QuantTensor& t) {
  std::vector<float> values(size_t(t.rows) * size_t(t.cols));
  for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, r, values.data() + r * t.cols);
  return values;
}

class DeepseekModel final : public MoeDecoderModel {
 public:
  DeepseekModel(const ModelSource& source, std::unique_ptr<Backend> backend)
      : MoeDecoderModel(source, std::move(backend), checked_config(source)) {
    const ModelConfig& c = config_;
    const MlaConfig& m = c.mla;
    const int64_t d = c.d_model, heads = c.n_heads;
    const int64_t q_width = heads * (m.qk_nope_head_dim + m.qk_rope_head_dim);
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      const std::string a = p + "self_attn.";
      Layer& l = layers_[size_t(i)];
      l.attn_norm = be_->vector(require_vector(source, p + "input_layernorm.weight", d));
      l.ffn_norm = be_->vector(require_vector(source, p + "post_attention_layernorm.weight", d));
      // Added in the order block() runs them (the linear groups' order).
      if (m.q_lora_rank > 0) {
        l.q_a = add_linear(i, source, {{a + "q_a_proj.weight", m.q_lora_rank, d}});
        l.q_a_norm = be_->vector(require_vector(source, a + "q_a_layernorm.weight", m.q_lora_rank));
      } else {
        l.q = add_linear(i, source, {{a + "q_proj.weight", q_width, d}});
      }
      l.kv_a = add_linear(i, source, {{a + "kv_a_proj_with_mqa.weight", m.kv_lora_rank + m.qk_rope_head_dim, d}});
      l.kv_a_norm = be_->vector(require_vector(source, a + "kv_a_layernorm.weight", m.kv_lora_rank));
      if (m.q_lora_rank > 0) l.q = add_linear(i, source, {{a + "q_b_proj.weight", q_width, m.q_lora_rank}});
      l.kv_up = be_->mla_kv_up(dequantized(
          require_matrix(source, a + "kv_b_proj.weight", heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank)));
      l.wo = add_linear(i, source, {{a + "o_proj.weight", d, heads * m.v_head_dim}});
      if (c.moe.sparse(i)) {
        add_moe(i, source, l);
      } else {
        l.mlp = add_swiglu_mlp(i, source, "mlp.", c.d_ffn);
      }
    }
  }

 private:
  enum Slot : int { kQa = kFirstBlockSlot, kQ, kKvA, kAttn, kDelta, kRouterLogits, kSharedDelta };

  struct Layer {
    std::unique_ptr<BackendTensor> attn_norm, ffn_norm, q_a_norm, kv_a_norm, kv_up;
    const StackedLinear* q_a = nullptr;  // only with q_lora_rank
    const StackedLinear *q, *kv_a, *wo;
    SwigluMlp mlp;      // dense layers
    SparseMlp moe;      // sparse layers
    SwigluMlp shared;   // sparse layers whose shared experts are wider than one expert
    int shared_group = 0;
  };

  // The router (and its score bias), the routed experts and the shared experts of sparse layer i.
  void add_moe(int i, const ModelSource& source, Layer& l) {
    const MoeConfig& m = config_.moe;
    const std::string p = "model.layers." + std::to_string(i) + ".mlp.";
    SparseMlpNames names{p + "gate.weight", {}, m.score_bias ? p + "gate.e_score_correction_bias" : ""};
    for (int e = 0; e < m.n_experts; ++e) {
      const std::string x = p + "experts." + std::to_string(e) + ".";
      names.experts.push_back({x + "gate_proj.weight", x + "up_proj.weight", x + "down_proj.weight"});
    }
    const std::string s = p + "shared_experts.";
    if (m.routing.n_shared == 1) names.experts.push_back({s + "gate_proj.weight", s + "up_proj.weight", s + "down_proj.weight"});
    l.moe = add_sparse_mlp(i, source, std::move(names));
    if (m.d_shared_ffn > 0 && m.routing.n_shared == 0) {
      l.shared_group = int(linear_groups(i).size());
      l.shared = add_swiglu_mlp(i, source, "mlp.shared_experts.", m.d_shared_ffn);
    }
  }

  const BackendTensor& input_norm(int layer) const override { return *layers_[size_t(layer)].attn_norm; }

  // Linear groups in order: q_a_proj, kv_a_proj_with_mqa, q_b_proj (without q_lora_rank: q_proj,
  // kv_a_proj_with_mqa), then o_proj, and gate/up, down of a dense layer, or of a sparse one the
  // router, each expert's gate/up and down (the shared expert last when it is one of them), then
  // a wider shared MLP's gate/up and down. kv_b_proj is no linear group: attention reads it
  // absorbed (fp32), so calibration leaves it as stored.
  void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
             const BackendTensor* next_norm) override {
    const ModelConfig& c = config_;
    const MlaConfig& m = c.mla;
    const int64_t n = x.rows, d = c.d_model;
    const Layer& l = layers_[size_t(li)];
    const Act q = be_->activations(kQ, n, c.n_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim), ActType::kF16);
    const Act kv_a = be_->activations(kKvA, n, m.kv_lora_rank + m.qk_rope_head_dim, ActType::kF16);
    const Act attn = be_->activations(kAttn, n, int64_t(c.n_heads) * m.v_head_dim, ActType::kF16);
    const Act delta = be_->activations(kDelta, n, d, ActType::kF16);

    int group = 0;
    if (l.q_a) {
      const Act qa = be_->activations(kQa, n, m.q_lora_rank, ActType::kF16);
      observe(observer, group++, h);
      be_->matmul(**l.q_a, h, qa);
      observe(observer, group++, h);
      be_->matmul(**l.kv_a, h, kv_a);
      be_->rms_norm_rows(qa, *l.q_a_norm, c.rms_eps);  // in place: qa is fp16 on the GPU
      observe(observer, group++, qa);
      be_->matmul(**l.q, qa, q);
    } else {
      observe(observer, group++, h);
      be_->matmul(**l.q, h, q);
      observe(observer, group++, h);
      be_->matmul(**l.kv_a, h, kv_a);
    }
    be_->mla_store_kv(kv_a, *l.kv_a_norm, c.rms_eps, cache, li);
    be_->mla_attention(q, *l.kv_up, cache, li, attn);
    observe(observer, group++, attn);
    be_->matmul(**l.wo, attn, delta);
    be_->add_rms_norm(x, delta, *l.ffn_norm, c.rms_eps, h);
    if (l.mlp.gate_up) {
      swiglu_mlp(l.mlp, h, delta, observer, group);
    } else {
      sparse_mlp(l.moe, h, delta, kRouterLogits, observer);
      if (l.shared.gate_up) {
        // x + (routed + shared), added as (x + routed) + shared with the residual ops.
        const Act shared = be_->activations(kSharedDelta, n, d, ActType::kF16);
        swiglu_mlp(l.shared, h, shared, observer, l.shared_group);
        be_->add(x, delta);
        residual_add(x, shared, h, next_norm);
        return;
      }
    }
    residual_add(x, delta, h, next_norm);
  }

  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_deepseek(const ModelSource& source, std::unique_ptr<Backend> backend) {
  return std::make_unique<DeepseekModel>(source, std::move(backend));
}

}  // namespace marlin
