#include "model/synthetic_source.h"

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>

#include <fmt/format.h>

#include "core/error.h"
#include "core/half.h"
#include "quant/quant_buffers.h"

namespace marlin {
namespace {

// GLM-4.7-Flash (Glm4MoeLiteForCausalLM), as zai-org/GLM-4.7-Flash's config.json gives it (the
// copy in vLLM's tests/transformers_utils glm4_moe_lite config test, 2026): hidden_size 2048,
// 47 layers (the checkpoint's extra MTP layer is not part of the model), 20 heads, q_lora_rank
// 768, kv_lora_rank 512, qk_nope_head_dim 192, qk_rope_head_dim 64, v_head_dim 256,
// intermediate_size 10240 (the first, dense layer), 64 routed experts of moe_intermediate_size
// 1536, 4 per token, 1 shared expert, n_group 1, norm_topk_prob, routed_scaling_factor 1.8,
// sigmoid scores with e_score_correction_bias (noaux_tc), vocab 154880, rope_theta 1e6 without
// scaling, rms_norm_eps 1e-5, max_position_embeddings 202752. "tiny-glm" is its layout in 2
// layers (dense, sparse) of small widths, for tests.
ModelConfig glm_config(const std::string& shape) {
  ModelConfig c;
  c.architecture = "glm4moelite";
  c.name = "synthetic-" + shape;
  MlaConfig& m = c.mla;
  MoeConfig& e = c.moe;
  if (shape == "glm-4.7-flash") {
    c.n_layers = 47, c.d_model = 2048, c.n_heads = 20, c.d_ffn = 10240, c.vocab_size = 154880;
    c.context_length = 202752;
    m.q_lora_rank = 768, m.kv_lora_rank = 512, m.qk_nope_head_dim = 192, m.qk_rope_head_dim = 64, m.v_head_dim = 256;
    e.n_experts = 64, e.d_expert_ffn = 1536, e.routing.top_k = 4;
  } else {
    c.n_layers = 2, c.d_model = 256, c.n_heads = 4, c.d_ffn = 512, c.vocab_size = 512, c.context_length = 4096;
    m.q_lora_rank = 128, m.kv_lora_rank = 128, m.qk_nope_head_dim = 32, m.qk_rope_head_dim = 16, m.v_head_dim = 32;
    e.n_experts = 8, e.d_expert_ffn = 128, e.routing.top_k = 2;
  }
  c.n_kv_heads = c.n_heads;
  c.head_dim = m.qk_rope_head_dim;
  c.rms_eps = 1e-5f;
  c.rope.theta = 1000000.0f;
  c.rope.dim = c.head_dim;
  c.rope.pairing = RopePairing::kAdjacent;  // rope_interleave (transformers' default)
  m.softmax_scale = 1.0f / std::sqrt(float(m.qk_nope_head_dim + m.qk_rope_head_dim));
  e.routing.renormalize = true;
  e.routing.scoring = RouterScoring::kSigmoid;
  e.routing.group_score = GroupScore::kTopTwoSum;
  e.routing.scale = 1.8f;
  e.score_bias = true;
  e.d_shared_ffn = e.d_expert_ffn;
  e.sparse_layers.assign(size_t(c.n_layers), true);
  e.sparse_layers[0] = false;
  return c;
}

ModelConfig shape_config(const std::string& shape) {
  ModelConfig c;
  c.architecture = "llama";
  c.name = "synthetic-" + shape;
  if (shape == "llama3-8b") {
    c.n_layers = 32, c.d_model = 4096, c.n_heads = 32, c.n_kv_heads = 8, c.head_dim = 128, c.d_ffn = 14336;
    c.vocab_size = 128256, c.context_length = 131072, c.rope.theta = 500000.0f;
  } else if (shape == "tiny") {
    c.n_layers = 2, c.d_model = 256, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.d_ffn = 512;
    c.vocab_size = 512, c.context_length = 4096;
  } else if (shape == "qwen3-30b-a3b") {  // Qwen3-30B-A3B's config.json
    c.architecture = "qwen3moe";
    c.n_layers = 48, c.d_model = 2048, c.n_heads = 32, c.n_kv_heads = 4, c.head_dim = 128, c.d_ffn = 6144;
    c.vocab_size = 151936, c.context_length = 40960, c.rope.theta = 1000000.0f, c.rms_eps = 1e-6f;
    c.moe.n_experts = 128, c.moe.d_expert_ffn = 768;
    c.moe.routing = {8, true, RouterScoring::kSoftmax};
  } else if (shape == "tiny-moe") {  // Qwen3-MoE layout, for tests
    c.architecture = "qwen3moe";
    c.n_layers = 2, c.d_model = 256, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.d_ffn = 512;
    c.vocab_size = 512, c.context_length = 4096, c.rms_eps = 1e-6f;
    c.moe.n_experts = 8, c.moe.d_expert_ffn = 128;
    c.moe.routing = {2, true, RouterScoring::kSoftmax};
  } else if (shape == "glm-4.7-flash" || shape == "tiny-glm") {
    return glm_config(shape);
  } else {
    fail("unknown synthetic model shape '{}' (known: llama3-8b, tiny, qwen3-30b-a3b, tiny-moe, glm-4.7-flash, "
         "tiny-glm)",
         shape);
  }
  c.rope.dim = c.head_dim;
  c.rope.pairing = RopePairing::kHalfSplit;
  return c;
}

// splitmix64: fast, and enough for noise.
struct Noise {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  void fill(uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
      const uint64_t v = next();
      std::memcpy(out + i, &v, std::min<size_t>(8, n - i));
    }
  }
  // Uniform in [-a, a).
  float uniform(float a) { return a * (float(next() >> 40) * (2.0f / 16777216.0f) - 1.0f); }
};

class SyntheticSource final : public ModelSource {
 public:
  SyntheticSource(const std::string& shape, const TensorFormat& format, uint64_t seed)
      : config_(shape_config(shape)),
        format_(format),
        // lm_head as `marlin quantize` stores it by default (runtime/quant_rules.cpp): 8 bits
        // for formats of fewer bits.
        head_format_(format.kind == FormatKind::kF16 || format.kind == FormatKind::kInt8
                         ? format
                         : TensorFormat::parse("int8-g32")),
        seed_(seed) {
    const bool planar_int = (format.kind == FormatKind::kInt8 || format.kind == FormatKind::kInt4 ||
                             format.kind == FormatKind::kInt3 || format.kind == FormatKind::kInt2) &&
                            !format.act_order && !format.sparse_24;
    MARLIN_CHECK(format.kind == FormatKind::kF16 || format.kind == FormatKind::kTrellis || planar_int,
                 "synthetic models come in f16, intN (no act-order or 2:4) or trellis formats, not {}", format.name());
    const int64_t d = config_.d_model, qd = int64_t(config_.n_heads) * config_.head_dim;
    const int64_t kvd = int64_t(config_.n_kv_heads) * config_.head_dim, f = config_.d_ffn;
    shapes_["model.embed_tokens.weight"] = {config_.vocab_size, d};
    shapes_["lm_head.weight"] = {config_.vocab_size, d};
    shapes_["model.norm.weight"] = {1, d};
    if (config_.mla.enabled()) {
      add_mla_layers();
      return;
    }
    for (int i = 0; i < config_.n_layers; ++i) {
      const std::string p = fmt::format("model.layers.{}.", i);
      shapes_[p + "input_layernorm.weight"] = {1, d};
      shapes_[p + "post_attention_layernorm.weight"] = {1, d};
      shapes_[p + "self_attn.q_proj.weight"] = {qd, d};
      shapes_[p + "self_attn.k_proj.weight"] = {kvd, d};
      shapes_[p + "self_attn.v_proj.weight"] = {kvd, d};
      shapes_[p + "self_attn.o_proj.weight"] = {d, qd};
      if (config_.moe.n_experts == 0) {
        shapes_[p + "mlp.gate_proj.weight"] = {f, d};
        shapes_[p + "mlp.up_proj.weight"] = {f, d};
        shapes_[p + "mlp.down_proj.weight"] = {d, f};
        continue;
      }
      // Qwen3-MoE: per-head q/k norms, a router and the experts.
      shapes_[p + "self_attn.q_norm.weight"] = {1, config_.head_dim};
      shapes_[p + "self_attn.k_norm.weight"] = {1, config_.head_dim};
      shapes_[p + "mlp.gate.weight"] = {config_.moe.n_experts, d};
      const int64_t fe = config_.moe.d_expert_ffn;
      for (int e = 0; e < config_.moe.n_experts; ++e) {
        const std::string x = fmt::format("{}mlp.experts.{}.", p, e);
        shapes_[x + "gate_proj.weight"] = {fe, d};
        shapes_[x + "up_proj.weight"] = {fe, d};
        shapes_[x + "down_proj.weight"] = {d, fe};
      }
    }
  }

  // DeepSeek-V3 / GLM-4.7-Flash layers, named as deepseek.cpp reads them: MLA attention, then a
  // dense MLP or a router (with its score bias), the routed experts and the shared experts.
  void add_mla_layers() {
    const ModelConfig& c = config_;
    const MlaConfig& m = c.mla;
    const int64_t d = c.d_model, heads = c.n_heads;
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = fmt::format("model.layers.{}.", i), a = p + "self_attn.";
      shapes_[p + "input_layernorm.weight"] = {1, d};
      shapes_[p + "post_attention_layernorm.weight"] = {1, d};
      shapes_[a + "q_a_proj.weight"] = {m.q_lora_rank, d};
      shapes_[a + "q_a_layernorm.weight"] = {1, m.q_lora_rank};
      shapes_[a + "q_b_proj.weight"] = {heads * (m.qk_nope_head_dim + m.qk_rope_head_dim), m.q_lora_rank};
      shapes_[a + "kv_a_proj_with_mqa.weight"] = {m.kv_lora_rank + m.qk_rope_head_dim, d};
      shapes_[a + "kv_a_layernorm.weight"] = {1, m.kv_lora_rank};
      shapes_[a + "kv_b_proj.weight"] = {heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank};
      shapes_[a + "o_proj.weight"] = {d, heads * m.v_head_dim};
      if (!c.moe.sparse(i)) {
        add_mlp(p + "mlp.", c.d_ffn);
        continue;
      }
      shapes_[p + "mlp.gate.weight"] = {c.moe.n_experts, d};
      shapes_[p + "mlp.gate.e_score_correction_bias"] = {1, c.moe.n_experts};
      for (int e = 0; e < c.moe.n_experts; ++e) add_mlp(fmt::format("{}mlp.experts.{}.", p, e), c.moe.d_expert_ffn);
      add_mlp(p + "mlp.shared_experts.", c.moe.d_shared_ffn);
    }
  }

  void add_mlp(const std::string& prefix, int64_t f) {
    const int64_t d = config_.d_model;
    shapes_[prefix + "gate_proj.weight"] = {f, d};
    shapes_[prefix + "up_proj.weight"] = {f, d};
    shapes_[prefix + "down_proj.weight"] = {d, f};
  }

  const ModelConfig& config() const override { return config_; }
  std::unique_ptr<Tokenizer> tokenizer() const override { fail("a synthetic model has no tokenizer"); }
  std::string chat_template() const override { return ""; }
  std::string description() const override { return config_.name + " (random " + format_.name() + " weights)"; }
  nlohmann::json hf_config() const override { fail("a synthetic model cannot be exported"); }
  std::string tokenizer_json() const override { fail("a synthetic model has no tokenizer"); }
  std::string tokenizer_config_json() const override { fail("a synthetic model has no tokenizer"); }

  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const auto& [name, shape] : shapes_) names.push_back(name);
    return names;
  }

  // Made on first request and kept (views stay valid while the source lives).
  std::optional<QuantTensor> tensor(std::string_view name) const override {
    const auto shape = shapes_.find(std::string(name));
    if (shape == shapes_.end()) return std::nullopt;
    std::lock_guard lock(mutex_);
    auto it = made_.find(shape->first);
    if (it == made_.end()) it = made_.emplace(shape->first, make(shape->first, shape->second)).first;
    return it->second.view();
  }

 private:
  QuantBuffers make(const std::string& name, std::pair<int64_t, int64_t> shape) const {
    auto [rows, cols] = shape;
    Noise noise{seed_ ^ std::hash<std::string>()(name)};
    if (rows == 1) {  // norm weights around 1, router score biases around 0
      const bool bias = name.ends_with(".e_score_correction_bias");
      QuantBuffers b = QuantBuffers::allocate(TensorFormat{FormatKind::kF32}, rows, cols);
      for (int64_t k = 0; k < cols; ++k) {
        const float v = (bias ? 0.0f : 1.0f) + noise.uniform(0.1f);
        std::memcpy(&b.codes[size_t(k) * 4], &v, 4);
      }
      return b;
    }
    // Weights of standard deviation about 1/sqrt(cols), so each layer keeps activations bounded.
    // Embeddings, routers and MLA's kv_b_proj stay f16 (quantizers keep routers at full
    // precision; kv_b_proj is read absorbed into attention, no linear to quantize).
    const bool router = name.ends_with(".mlp.gate.weight");
    const bool f16 = name == "model.embed_tokens.weight" || router || name.ends_with(".kv_b_proj.weight");
    const TensorFormat f = f16 ? TensorFormat{FormatKind::kF16}
                           : name == "lm_head.weight"                   ? head_format_
                                                                        : format_;
    QuantBuffers b = QuantBuffers::allocate(f, rows, cols);
    const float sigma = 1.0f / std::sqrt(float(cols));
    if (f.kind == FormatKind::kF16) {
      auto* out = reinterpret_cast<uint16_t*>(b.codes.data());
      const float a = sigma * std::sqrt(3.0f);
      for (size_t i = 0; i < size_t(rows * cols); ++i) out[i] = fp32_to_fp16(noise.uniform(a));
      return b;
    }
    noise.fill(b.codes.data(), b.codes.size());  // uniform codes: standard deviation ≈ 2^bits / sqrt(12)
    if (f.kind == FormatKind::kTrellis) {  // any bitstream is valid; values of unit variance
      auto* scales = reinterpret_cast<uint16_t*>(b.scales.data());
      for (size_t i = 0; i < b.scales.size() / 2; ++i) scales[i] = fp32_to_fp16(sigma);
      return b;  // one rotation seed for every tensor, so stacked parts share their input rotation
    }
    const int bits = format_info(f.kind).code_bits;
    const uint16_t scale = fp32_to_fp16(sigma * std::sqrt(12.0f) / float(1 << bits));
    auto* scales = reinterpret_cast<uint16_t*>(b.scales.data());
    for (size_t i = 0; i < b.scales.size() / 2; ++i) scales[i] = scale;
    std::memset(b.zeros.data(), 1 << (bits - 1), b.zeros.size());
    return b;
  }

  ModelConfig config_;
  TensorFormat format_, head_format_;
  uint64_t seed_;
  std::map<std::string, std::pair<int64_t, int64_t>> shapes_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, QuantBuffers> made_;
};

}  // namespace

std::vector<std::string> synthetic_shapes() {
  return {"llama3-8b", "tiny", "qwen3-30b-a3b", "tiny-moe", "glm-4.7-flash", "tiny-glm"};
}

std::unique_ptr<ModelSource> make_synthetic_source(const std::string& shape, const TensorFormat& format,
                                                   uint64_t seed) {
  return std::make_unique<SyntheticSource>(shape, format, seed);
}

}  // namespace marlin
