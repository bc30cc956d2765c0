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
  } else {
    fail("unknown synthetic model shape '{}' (known: llama3-8b, tiny, qwen3-30b-a3b, tiny-moe)", shape);
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
    MARLIN_CHECK(format.kind == FormatKind::kF16 || planar_int,
                 "synthetic models come in f16 or intN formats (no act-order or 2:4), not {}", format.name());
    const int64_t d = config_.d_model, qd = int64_t(config_.n_heads) * config_.head_dim;
    const int64_t kvd = int64_t(config_.n_kv_heads) * config_.head_dim, f = config_.d_ffn;
    shapes_["model.embed_tokens.weight"] = {config_.vocab_size, d};
    shapes_["lm_head.weight"] = {config_.vocab_size, d};
    shapes_["model.norm.weight"] = {1, d};
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
    if (rows == 1) {  // norm weights around 1
      QuantBuffers b = QuantBuffers::allocate(TensorFormat{FormatKind::kF32}, rows, cols);
      for (int64_t k = 0; k < cols; ++k) {
        const float v = 1.0f + noise.uniform(0.1f);
        std::memcpy(&b.codes[size_t(k) * 4], &v, 4);
      }
      return b;
    }
    // Weights of standard deviation about 1/sqrt(cols), so each layer keeps activations bounded.
    // Embeddings and routers stay f16 (quantizers keep routers at full precision).
    constexpr std::string_view kRouter = ".mlp.gate.weight";
    const bool router = name.ends_with(kRouter);
    const TensorFormat f = name == "model.embed_tokens.weight" || router ? TensorFormat{FormatKind::kF16}
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

std::vector<std::string> synthetic_shapes() { return {"llama3-8b", "tiny", "qwen3-30b-a3b", "tiny-moe"}; }

std::unique_ptr<ModelSource> make_synthetic_source(const std::string& shape, const TensorFormat& format,
                                                   uint64_t seed) {
  return std::make_unique<SyntheticSource>(shape, format, seed);
}

}  // namespace marlin
