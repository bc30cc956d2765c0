#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/ops.h"
#include "model/attention.h"
#include "model/rope.h"
#include "model/weights.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

// Prompts are processed in chunks of at most this many tokens: big enough for the matmul to
// reuse each weight across many rows, small enough to bound activation memory.
constexpr int64_t kMaxChunk = 256;

struct Layer {
  std::vector<float> attn_norm, ffn_norm;
  QuantTensor wq, wk, wv, wo, w_gate, w_up, w_down;
};

// Activations for one chunk of tokens.
struct Scratch {
  std::vector<float> x, h, q, k, v, attn, gate, up;
  std::vector<float> rope;  // cos/sin per token
  void reserve(const ModelConfig& c, int64_t tokens) {
    const size_t t = size_t(tokens);
    x.resize(t * c.d_model);
    h.resize(t * c.d_model);
    q.resize(t * c.n_heads * c.head_dim);
    k.resize(t * c.n_kv_heads * c.head_dim);
    v.resize(t * c.n_kv_heads * c.head_dim);
    attn.resize(t * c.n_heads * c.head_dim);
    gate.resize(t * c.d_ffn);
    up.resize(t * c.d_ffn);
    rope.resize(t * c.head_dim);
  }
};

class LlamaModel final : public Model {
 public:
  LlamaModel(const ModelSource& source, ThreadPool& pool) : pool_(pool), config_(source.config()) {
    ModelConfig& c = config_;
    const auto embd = source.tensor("model.embed_tokens.weight");
    MARLIN_CHECK(embd.has_value(), "model: tensor 'model.embed_tokens.weight' is missing from {}",
                 source.description());
    if (c.vocab_size == 0) c.vocab_size = int(embd->rows);
    rope_ = std::make_unique<Rope>(c.rope, c.head_dim);

    const int64_t d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
    embedding_ = require_matrix(source, "model.embed_tokens.weight", c.vocab_size, d);
    // Without an lm_head the output projection is the embedding (tied weights).
    output_ = source.tensor("lm_head.weight") ? require_matrix(source, "lm_head.weight", c.vocab_size, d) : embedding_;
    output_norm_ = require_vector(source, "model.norm.weight", d);
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[size_t(i)];
      l.attn_norm = require_vector(source, p + "input_layernorm.weight", d);
      l.ffn_norm = require_vector(source, p + "post_attention_layernorm.weight", d);
      l.wq = require_matrix(source, p + "self_attn.q_proj.weight", qd, d);
      l.wk = require_matrix(source, p + "self_attn.k_proj.weight", kvd, d);
      l.wv = require_matrix(source, p + "self_attn.v_proj.weight", kvd, d);
      l.wo = require_matrix(source, p + "self_attn.o_proj.weight", d, qd);
      l.w_gate = require_matrix(source, p + "mlp.gate_proj.weight", c.d_ffn, d);
      l.w_up = require_matrix(source, p + "mlp.up_proj.weight", c.d_ffn, d);
      l.w_down = require_matrix(source, p + "mlp.down_proj.weight", d, c.d_ffn);
    }
  }

  const ModelConfig& config() const override { return config_; }

  std::vector<LinearGroup> linear_groups(int layer) const override {
    MARLIN_CHECK(layer >= 0 && layer < config_.n_layers, "model: no layer {}", layer);
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    // In the order block() reports them: attention input, attention output, MLP input, MLP hidden.
    return {{{p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"}},
            {{p + "self_attn.o_proj.weight"}},
            {{p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}},
            {{p + "mlp.down_proj.weight"}}};
  }

  void embed(std::span<const int32_t> tokens, float* x) const override {
    for (size_t t = 0; t < tokens.size(); ++t) {
      MARLIN_CHECK(tokens[t] >= 0 && tokens[t] < config_.vocab_size, "token id {} is outside the vocabulary", tokens[t]);
      dequantize_row(embedding_, tokens[t], x + t * size_t(config_.d_model));
    }
  }

  void run_layer(int layer, float* x, int64_t n, KvCache& cache, const LinearInputObserver& observer) override {
    MARLIN_CHECK(layer >= 0 && layer < config_.n_layers, "model: no layer {}", layer);
    MARLIN_CHECK(cache.length() == 0 && n <= cache.capacity(), "run_layer: needs an empty cache of {} positions", n);
    const int64_t d = config_.d_model;
    s_.reserve(config_, n);
    std::copy_n(x, n * d, s_.x.data());
    for (int64_t t = 0; t < n; ++t) rope_->angles(t, &s_.rope[size_t(t * config_.head_dim)]);
    block(layer, n, 0, cache, observer ? &observer : nullptr);
    std::copy_n(s_.x.data(), n * d, x);
  }

  void replace_weight(const std::string& name, const QuantTensor& weight) override {
    QuantTensor* w = linear(name);
    MARLIN_CHECK(w != nullptr, "model: no linear weight '{}'", name);
    MARLIN_CHECK(weight.rows == w->rows && weight.cols == w->cols, "model: '{}' is {} x {}, the replacement {} x {}",
                 name, w->rows, w->cols, weight.rows, weight.cols);
    *w = weight;
  }

  std::unique_ptr<KvCache> new_cache(int64_t capacity) const override {
    MARLIN_CHECK(capacity > 0, "context size must be positive");
    return std::make_unique<KvCache>(config_.n_layers, config_.n_kv_heads, config_.head_dim, capacity);
  }

  void forward(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_logits) override {
    MARLIN_CHECK(!tokens.empty(), "forward: no tokens");
    MARLIN_CHECK(cache.length() + int64_t(tokens.size()) <= cache.capacity(),
                 "the prompt and answer need {} tokens but the context holds {}",
                 cache.length() + int64_t(tokens.size()), cache.capacity());
    for (int32_t t : tokens)
      MARLIN_CHECK(t >= 0 && t < config_.vocab_size, "token id {} is outside the vocabulary (size {})", t,
                   config_.vocab_size);
    for (size_t begin = 0; begin < tokens.size(); begin += size_t(kMaxChunk)) {
      const size_t count = std::min(tokens.size() - begin, size_t(kMaxChunk));
      const bool last_chunk = begin + count == tokens.size();
      float* chunk_logits = all_logits ? logits + begin * size_t(config_.vocab_size) : logits;
      forward_chunk(tokens.subspan(begin, count), cache, last_chunk || all_logits ? chunk_logits : nullptr,
                    all_logits);
    }
  }

 private:
  void forward_chunk(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_logits) {
    const ModelConfig& c = config_;
    const int64_t n = int64_t(tokens.size()), d = c.d_model;
    const int64_t pos0 = cache.length();
    s_.reserve(c, n);

    embed(tokens, s_.x.data());
    for (int64_t t = 0; t < n; ++t) rope_->angles(pos0 + t, &s_.rope[size_t(t * c.head_dim)]);

    for (int li = 0; li < c.n_layers; ++li) block(li, n, pos0, cache, nullptr);
    cache.advance(n);
    if (!logits) return;

    // Logits for every token of the chunk, or only for the last one.
    const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
    for (int64_t t = first; t < n; ++t)
      cpu::rms_norm(&s_.x[t * d], output_norm_.data(), c.rms_eps, d, &s_.h[(t - first) * d]);
    cpu::matmul(output_, s_.h.data(), rows, logits, pool_);
  }

  // One transformer block on the chunk's hidden states s_.x (n tokens at positions pos0...).
  void block(int li, int64_t n, int64_t pos0, KvCache& cache, const LinearInputObserver* observer) {
    const ModelConfig& c = config_;
    const int64_t d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
    const Layer& l = layers_[size_t(li)];
    auto observe = [&](int group, const std::vector<float>& x, int64_t cols) {
      if (observer) (*observer)(group, x.data(), n, cols);
    };
    for (int64_t t = 0; t < n; ++t) cpu::rms_norm(&s_.x[t * d], l.attn_norm.data(), c.rms_eps, d, &s_.h[t * d]);
    observe(0, s_.h, d);
    cpu::matmul(l.wq, s_.h.data(), n, s_.q.data(), pool_);
    cpu::matmul(l.wk, s_.h.data(), n, s_.k.data(), pool_);
    cpu::matmul(l.wv, s_.h.data(), n, s_.v.data(), pool_);
    for (int64_t t = 0; t < n; ++t) {
      const float* cs = &s_.rope[size_t(t * c.head_dim)];
      rope_->rotate(&s_.q[t * qd], c.n_heads, cs);
      rope_->rotate(&s_.k[t * kvd], c.n_kv_heads, cs);
      for (int h = 0; h < c.n_kv_heads; ++h) {
        std::copy_n(&s_.k[t * kvd + h * c.head_dim], c.head_dim, cache.key(li, h, pos0 + t));
        std::copy_n(&s_.v[t * kvd + h * c.head_dim], c.head_dim, cache.value(li, h, pos0 + t));
      }
    }
    causal_attention(AttentionShape{c.n_heads, c.n_kv_heads, c.head_dim}, s_.q.data(), n, pos0, cache, li,
                     s_.attn.data(), pool_);
    observe(1, s_.attn, qd);
    cpu::matmul(l.wo, s_.attn.data(), n, s_.h.data(), pool_);
    cpu::add_inplace(s_.x.data(), s_.h.data(), n * d);

    for (int64_t t = 0; t < n; ++t) cpu::rms_norm(&s_.x[t * d], l.ffn_norm.data(), c.rms_eps, d, &s_.h[t * d]);
    observe(2, s_.h, d);
    cpu::matmul(l.w_gate, s_.h.data(), n, s_.gate.data(), pool_);
    cpu::matmul(l.w_up, s_.h.data(), n, s_.up.data(), pool_);
    cpu::silu_mul(s_.gate.data(), s_.up.data(), n * c.d_ffn);
    observe(3, s_.gate, c.d_ffn);
    cpu::matmul(l.w_down, s_.gate.data(), n, s_.h.data(), pool_);
    cpu::add_inplace(s_.x.data(), s_.h.data(), n * d);
  }

  // The linear weight called `name` (Hugging Face naming), or nullptr.
  QuantTensor* linear(const std::string& name) {
    if (name == "lm_head.weight") return &output_;
    constexpr std::string_view kLayers = "model.layers.";
    if (name.rfind(kLayers, 0) != 0) return nullptr;
    const size_t dot = name.find('.', kLayers.size());
    if (dot == std::string::npos) return nullptr;
    const int li = std::atoi(name.substr(kLayers.size(), dot - kLayers.size()).c_str());
    if (li < 0 || li >= config_.n_layers || name.substr(kLayers.size(), dot - kLayers.size()) != std::to_string(li))
      return nullptr;
    Layer& l = layers_[size_t(li)];
    const std::string suffix = name.substr(dot + 1);
    for (auto [n, w] : {std::pair{"self_attn.q_proj.weight", &l.wq}, {"self_attn.k_proj.weight", &l.wk},
                        {"self_attn.v_proj.weight", &l.wv}, {"self_attn.o_proj.weight", &l.wo},
                        {"mlp.gate_proj.weight", &l.w_gate}, {"mlp.up_proj.weight", &l.w_up},
                        {"mlp.down_proj.weight", &l.w_down}})
      if (suffix == n) return w;
    return nullptr;
  }

  ThreadPool& pool_;
  ModelConfig config_;
  std::unique_ptr<Rope> rope_;
  QuantTensor embedding_{}, output_{};
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  Scratch s_;
};

}  // namespace

std::unique_ptr<Model> load_llama(const ModelSource& source, ThreadPool& pool) {
  return std::make_unique<LlamaModel>(source, pool);
}

}  // namespace marlin
