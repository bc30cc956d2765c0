#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <string>
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
    const int64_t qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
    const int64_t pos0 = cache.length();
    s_.reserve(c, n);

    for (int64_t t = 0; t < n; ++t) dequantize_row(embedding_, tokens[size_t(t)], &s_.x[size_t(t * d)]);
    for (int64_t t = 0; t < n; ++t) rope_->angles(pos0 + t, &s_.rope[size_t(t * c.head_dim)]);

    for (int li = 0; li < c.n_layers; ++li) {
      const Layer& l = layers_[size_t(li)];
      for (int64_t t = 0; t < n; ++t) cpu::rms_norm(&s_.x[t * d], l.attn_norm.data(), c.rms_eps, d, &s_.h[t * d]);
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
      cpu::matmul(l.wo, s_.attn.data(), n, s_.h.data(), pool_);
      cpu::add_inplace(s_.x.data(), s_.h.data(), n * d);

      for (int64_t t = 0; t < n; ++t) cpu::rms_norm(&s_.x[t * d], l.ffn_norm.data(), c.rms_eps, d, &s_.h[t * d]);
      cpu::matmul(l.w_gate, s_.h.data(), n, s_.gate.data(), pool_);
      cpu::matmul(l.w_up, s_.h.data(), n, s_.up.data(), pool_);
      cpu::silu_mul(s_.gate.data(), s_.up.data(), n * c.d_ffn);
      cpu::matmul(l.w_down, s_.gate.data(), n, s_.h.data(), pool_);
      cpu::add_inplace(s_.x.data(), s_.h.data(), n * d);
    }
    cache.advance(n);
    if (!logits) return;

    // Logits for every token of the chunk, or only for the last one.
    const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
    for (int64_t t = first; t < n; ++t)
      cpu::rms_norm(&s_.x[t * d], output_norm_.data(), c.rms_eps, d, &s_.h[(t - first) * d]);
    cpu::matmul(output_, s_.h.data(), rows, logits, pool_);
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
