#include "model/llama.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/weights.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

// Activation slots of the backend.
enum Slot : int { kX, kNormed, kQkv, kAttn, kDelta, kGateUp, kHidden, kLogits };

// The weights of one block as stored (views into the source) and as uploaded to the backend.
// Projections that read the same input are stacked: q, k, v → qkv; gate, up → gate_up.
struct Layer {
  std::unique_ptr<BackendTensor> attn_norm, ffn_norm;
  std::vector<QuantTensor> qkv_parts, wo_parts, gate_up_parts, down_parts;
  std::unique_ptr<BackendLinear> qkv, wo, gate_up, down;
};

class LlamaModel final : public Model {
 public:
  LlamaModel(const ModelSource& source, std::unique_ptr<Backend> backend)
      : be_(std::move(backend)), config_(source.config()) {
    ModelConfig& c = config_;
    const auto embd = source.tensor("model.embed_tokens.weight");
    MARLIN_CHECK(embd.has_value(), "model: tensor 'model.embed_tokens.weight' is missing from {}",
                 source.description());
    if (c.vocab_size == 0) c.vocab_size = int(embd->rows);
    be_->configure(c);

    const int64_t d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
    embedding_table_ = require_matrix(source, "model.embed_tokens.weight", c.vocab_size, d);
    embedding_ = be_->embedding(embedding_table_);
    // Without an lm_head the output projection is the embedding (tied weights).
    output_parts_ = {source.tensor("lm_head.weight") ? require_matrix(source, "lm_head.weight", c.vocab_size, d)
                                                     : embedding_table_};
    output_ = be_->linear(output_parts_);
    output_norm_ = be_->vector(require_vector(source, "model.norm.weight", d));
    layers_.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[size_t(i)];
      l.attn_norm = be_->vector(require_vector(source, p + "input_layernorm.weight", d));
      l.ffn_norm = be_->vector(require_vector(source, p + "post_attention_layernorm.weight", d));
      l.qkv_parts = {require_matrix(source, p + "self_attn.q_proj.weight", qd, d),
                     require_matrix(source, p + "self_attn.k_proj.weight", kvd, d),
                     require_matrix(source, p + "self_attn.v_proj.weight", kvd, d)};
      l.wo_parts = {require_matrix(source, p + "self_attn.o_proj.weight", d, qd)};
      l.gate_up_parts = {require_matrix(source, p + "mlp.gate_proj.weight", c.d_ffn, d),
                         require_matrix(source, p + "mlp.up_proj.weight", c.d_ffn, d)};
      l.down_parts = {require_matrix(source, p + "mlp.down_proj.weight", d, c.d_ffn)};
      upload(l);
    }
  }

  const ModelConfig& config() const override { return config_; }
  std::string device_description() const override { return be_->description(); }
  double copy_bandwidth() override { return be_->copy_bandwidth(); }

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
    check_tokens(tokens);
    for (size_t t = 0; t < tokens.size(); ++t)
      dequantize_row(embedding_table_, tokens[t], x + t * size_t(config_.d_model));
  }

  void run_layer(int layer, float* x, int64_t n, KvCache& cache, const LinearInputObserver& observer) override {
    MARLIN_CHECK(layer >= 0 && layer < config_.n_layers, "model: no layer {}", layer);
    MARLIN_CHECK(cache.length() == 0 && n <= cache.capacity(), "run_layer: needs an empty cache of {} positions", n);
    const int64_t d = config_.d_model;
    std::vector<int32_t> positions_only(size_t(n), 0);
    cache.make_room(n);
    be_->begin_step(StepTokens::one_sequence(positions_only, 0), cache);
    const Act xa = be_->activations(kX, n, d, ActType::kF32);
    float* host = be_->host_data(xa);
    MARLIN_CHECK(host != nullptr, "layer-wise calibration runs on the CPU backend only");
    std::copy_n(x, n * d, host);
    const Act h = be_->activations(kNormed, n, d, ActType::kF16);
    be_->rms_norm(xa, *layers_[size_t(layer)].attn_norm, config_.rms_eps, h);
    block(layer, xa, h, cache, observer ? &observer : nullptr, nullptr);
    std::copy_n(host, n * d, x);
  }

  void replace_weight(const std::string& name, const QuantTensor& weight) override {
    auto [layer, part] = find_linear(name);
    MARLIN_CHECK(part != nullptr, "model: no linear weight '{}'", name);
    MARLIN_CHECK(weight.rows == part->rows && weight.cols == part->cols,
                 "model: '{}' is {} x {}, the replacement {} x {}", name, part->rows, part->cols, weight.rows,
                 weight.cols);
    *part = weight;
    if (layer) {
      upload(*layer);
    } else {
      output_ = be_->linear(output_parts_);
    }
  }

  std::unique_ptr<KvCache> new_cache(int64_t capacity, int sequences, const KvCacheLayout& layout) const override {
    MARLIN_CHECK(capacity > 0, "context size must be positive");
    MARLIN_CHECK(sequences >= 1 && sequences <= be_->max_step_tokens(), "a cache holds 1 to {} sequences, not {}",
                 be_->max_step_tokens(), sequences);
    MARLIN_CHECK(layout.block_size >= 0 && layout.blocks >= 0, "kv cache: block size {} and block count {}",
                 layout.block_size, layout.blocks);
    return be_->new_cache(capacity, sequences, layout);
  }

  void decode_sequences(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                        float* logits) override {
    decode_step(seqs, tokens, cache, {logits, nullptr, nullptr});
  }

  void decode_sequences_sample(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                               const SampleBatch& requests, int32_t* next) override {
    MARLIN_CHECK(requests.rows.size() == tokens.size(), "decode: {} sampling requests for {} sequences",
                 requests.rows.size(), tokens.size());
    check_sample_batch(requests.rows, requests.penalties, config_.vocab_size);  // before the cache advances
    decode_step(seqs, tokens, cache, {nullptr, &requests, next});
  }

  void forward_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache, float* logits,
                        bool all_logits) override {
    feed(seq, tokens, cache, {logits, nullptr, nullptr}, all_logits);
  }

  int32_t sample_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache,
                          const SampleBatch& request) override {
    MARLIN_CHECK(request.rows.size() == 1, "forward_sample: {} requests for one sequence", request.rows.size());
    check_sample_batch(request.rows, request.penalties, config_.vocab_size);  // before the cache advances
    int32_t next = 0;
    feed(seq, tokens, cache, {nullptr, &request, &next}, false);
    return next;
  }

 private:
  void check_tokens(std::span<const int32_t> tokens) const {
    for (int32_t t : tokens)
      MARLIN_CHECK(t >= 0 && t < config_.vocab_size, "token id {} is outside the vocabulary (size {})", t,
                   config_.vocab_size);
  }

  void upload(Layer& l) {
    l.qkv = be_->linear(l.qkv_parts);
    l.wo = be_->linear(l.wo_parts);
    l.gate_up = be_->linear(l.gate_up_parts);
    l.down = be_->linear(l.down_parts);
  }

  // What the last chunk of a step returns: logits, or tokens sampled from them (or nothing).
  struct Output {
    float* logits = nullptr;
    const SampleBatch* sampling = nullptr;
    int32_t* tokens = nullptr;
    bool any() const { return logits || sampling; }
  };

  // One token for each of `seqs` (distinct sequences of the cache, each at its own length).
  void decode_step(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache, Output out) {
    MARLIN_CHECK(seqs.size() == tokens.size(), "decode: {} sequences for {} tokens", seqs.size(), tokens.size());
    MARLIN_CHECK(!tokens.empty() && int64_t(tokens.size()) <= be_->max_step_tokens(),
                 "decode: {} sequences in one step (1 to {})", tokens.size(), be_->max_step_tokens());
    std::vector<int64_t> positions(seqs.size());
    std::vector<bool> seen(size_t(cache.sequences()), false);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      MARLIN_CHECK(s >= 0 && s < cache.sequences() && !seen[size_t(s)],
                   "decode: sequence {} is not in the cache or comes twice", s);
      seen[size_t(s)] = true;
      positions[i] = cache.length(s);
      MARLIN_CHECK(positions[i] < cache.capacity(), "context is full ({} tokens)", cache.capacity());
    }
    check_tokens(tokens);
    forward_chunk(StepTokens::decode(tokens, seqs, positions), cache, out, true);
  }

  // Feeds the tokens of sequence `seq` in chunks; the last chunk (every chunk with all_logits)
  // produces `out`.
  void feed(int seq, std::span<const int32_t> tokens, KvCache& cache, Output out, bool all_logits) {
    MARLIN_CHECK(!tokens.empty(), "forward: no tokens");
    MARLIN_CHECK(seq >= 0 && seq < cache.sequences(), "forward: no sequence {} in a cache of {}", seq,
                 cache.sequences());
    MARLIN_CHECK(cache.length(seq) + int64_t(tokens.size()) <= cache.capacity(),
                 "the prompt and answer need {} tokens but the context holds {}",
                 cache.length(seq) + int64_t(tokens.size()), cache.capacity());
    check_tokens(tokens);
    const auto chunk = size_t(be_->max_step_tokens());
    for (size_t begin = 0; begin < tokens.size(); begin += chunk) {
      const size_t count = std::min(tokens.size() - begin, chunk);
      const bool last_chunk = begin + count == tokens.size();
      Output chunk_out = last_chunk || all_logits ? out : Output{};
      if (all_logits && out.logits) chunk_out.logits = out.logits + begin * size_t(config_.vocab_size);
      const StepTokens step = StepTokens::one_sequence(tokens.subspan(begin, count), cache.length(seq), seq);
      forward_chunk(step, cache, chunk_out, all_logits);
    }
  }

  void forward_chunk(const StepTokens& step, KvCache& cache, Output out, bool all_logits) {
    const ModelConfig& c = config_;
    const int64_t n = int64_t(step.ids.size());
    if (step.several()) {
      for (const int32_t s : step.seqs) cache.make_room(1, s);
    } else {
      cache.make_room(n, step.seq);
    }
    be_->begin_step(step, cache);
    // Logits for every token of the chunk, or only for the last one.
    const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
    // A decode step (one token per sequence) has the same shape every time: the backend may
    // record it once.
    const bool decode = step.several() || n == 1;
    be_->run(decode && out.any() ? n : -1, [&] {
      const Act x = be_->activations(kX, n, c.d_model, ActType::kF32);
      be_->embed(*embedding_, x);
      // Each block's residual add is fused with the norm that follows it: the next block's
      // attention norm, or the output norm after the last block.
      const Act h = be_->activations(kNormed, n, c.d_model, ActType::kF16);
      be_->rms_norm(x, *layers_[0].attn_norm, c.rms_eps, h);
      for (int li = 0; li < c.n_layers; ++li) {
        const bool last = li + 1 == c.n_layers;
        const BackendTensor* next_norm = !last        ? layers_[size_t(li) + 1].attn_norm.get()
                                         : out.any() ? output_norm_.get()
                                                     : nullptr;
        block(li, x, h, cache, nullptr, next_norm);
      }
      if (!out.any()) return;
      be_->matmul(*output_, act_rows(h, first, rows), be_->activations(kLogits, rows, c.vocab_size, ActType::kF32));
    });
    if (step.several()) {
      for (const int32_t s : step.seqs) cache.advance(1, s);
    } else {
      cache.advance(n, step.seq);
    }
    const Act logits = be_->activations(kLogits, rows, c.vocab_size, ActType::kF32);
    if (out.logits) be_->to_host(logits, out.logits);
    if (out.sampling) be_->sample(logits, out.sampling->rows, out.sampling->penalties, out.tokens);
  }

  // One transformer block on the step's hidden states x (rows × d_model), in place; h holds x
  // normalized by the block's attention norm on entry and, when next_norm is given, x normalized by
  // next_norm on exit.
  void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
             const BackendTensor* next_norm) {
    const ModelConfig& c = config_;
    const int64_t n = x.rows, d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim;
    const int64_t kvd = int64_t(c.n_kv_heads) * c.head_dim;
    const Layer& l = layers_[size_t(li)];
    auto observe = [&](int group, const Act& a) {
      if (observer) (*observer)(group, be_->host_data(a), a.rows, a.cols);
    };
    const Act qkv = be_->activations(kQkv, n, qd + 2 * kvd, ActType::kF16);
    const Act attn = be_->activations(kAttn, n, qd, ActType::kF16);
    const Act delta = be_->activations(kDelta, n, d, ActType::kF16);
    const Act gate_up = be_->activations(kGateUp, n, 2 * c.d_ffn, ActType::kF16);
    const Act hidden = be_->activations(kHidden, n, c.d_ffn, ActType::kF16);

    observe(0, h);
    be_->matmul(*l.qkv, h, qkv);
    be_->rope_store_kv(qkv, cache, li);
    be_->attention(qkv, cache, li, attn);
    observe(1, attn);
    be_->matmul(*l.wo, attn, delta);
    be_->add_rms_norm(x, delta, *l.ffn_norm, c.rms_eps, h);
    observe(2, h);
    be_->matmul(*l.gate_up, h, gate_up);
    be_->silu_mul(gate_up, hidden);
    observe(3, hidden);
    be_->matmul(*l.down, hidden, delta);
    if (next_norm) {
      be_->add_rms_norm(x, delta, *next_norm, c.rms_eps, h);
    } else {
      be_->add(x, delta);
    }
  }

  // The layer and stored part of the linear weight `name` (Hugging Face naming); the layer is
  // nullptr for lm_head, the part nullptr when there is no such weight.
  std::pair<Layer*, QuantTensor*> find_linear(const std::string& name) {
    if (name == "lm_head.weight") return {nullptr, &output_parts_[0]};
    constexpr std::string_view kLayers = "model.layers.";
    if (name.rfind(kLayers, 0) != 0) return {nullptr, nullptr};
    const size_t dot = name.find('.', kLayers.size());
    if (dot == std::string::npos) return {nullptr, nullptr};
    const int li = std::atoi(name.substr(kLayers.size(), dot - kLayers.size()).c_str());
    if (li < 0 || li >= config_.n_layers || name.substr(kLayers.size(), dot - kLayers.size()) != std::to_string(li))
      return {nullptr, nullptr};
    Layer& l = layers_[size_t(li)];
    const std::string suffix = name.substr(dot + 1);
    for (auto [n, w] : {std::pair{"self_attn.q_proj.weight", &l.qkv_parts[0]},
                        {"self_attn.k_proj.weight", &l.qkv_parts[1]}, {"self_attn.v_proj.weight", &l.qkv_parts[2]},
                        {"self_attn.o_proj.weight", &l.wo_parts[0]}, {"mlp.gate_proj.weight", &l.gate_up_parts[0]},
                        {"mlp.up_proj.weight", &l.gate_up_parts[1]}, {"mlp.down_proj.weight", &l.down_parts[0]}})
      if (suffix == n) return {&l, w};
    return {nullptr, nullptr};
  }

  std::unique_ptr<Backend> be_;
  ModelConfig config_;
  QuantTensor embedding_table_{};
  std::unique_ptr<BackendTensor> embedding_, output_norm_;
  std::vector<QuantTensor> output_parts_;
  std::unique_ptr<BackendLinear> output_;
  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Model> load_llama(const ModelSource& source, std::unique_ptr<Backend> backend) {
  return std::make_unique<LlamaModel>(source, std::move(backend));
}

}  // namespace marlin
