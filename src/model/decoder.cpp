#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "model/weights.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

// The decoder's activation slots and the shared pieces' (DecoderModel::kFirstBlockSlot follows).
enum Slot : int { kX, kNormed, kLogits, kQkv, kAttn, kGateUp, kHidden };

}  // namespace

DecoderModel::DecoderModel(const ModelSource& source, std::unique_ptr<Backend> backend, ModelConfig config)
    : be_(std::move(backend)), config_(std::move(config)) {
  ModelConfig& c = config_;
  MARLIN_CHECK(c.sliding_window.empty() || int(c.sliding_window.size()) == c.n_layers,
               "model: {} sliding windows for {} layers", c.sliding_window.size(), c.n_layers);
  for (const int w : c.sliding_window) MARLIN_CHECK(w >= 0, "model: sliding window {} is negative", w);
  MARLIN_CHECK(!c.sliding_rope || c.sliding_rope->dim == c.rope.dim,
               "model: sliding layers rotate {} dimensions, the others {}", c.sliding_rope ? c.sliding_rope->dim : 0,
               c.rope.dim);
  MARLIN_CHECK(std::isfinite(c.embedding_scale) && c.embedding_scale > 0 && std::isfinite(c.attention_scale) &&
                   c.attention_scale >= 0,
               "model: embedding scale {} or attention scale {} is out of range", c.embedding_scale,
               c.attention_scale);
  const auto embd = source.tensor("model.embed_tokens.weight");
  MARLIN_CHECK(embd.has_value(), "model: tensor 'model.embed_tokens.weight' is missing from {}",
               source.description());
  if (c.vocab_size == 0) c.vocab_size = int(embd->rows);
  be_->configure(c);
  layer_groups_.resize(size_t(c.n_layers));

  embedding_table_ = require_matrix(source, "model.embed_tokens.weight", c.vocab_size, c.d_model);
  embedding_ = be_->embedding(embedding_table_);
  // Without an lm_head the output projection is the embedding (tied weights); either way it is
  // replaced by the name "lm_head.weight".
  auto output = std::make_unique<StackedLinear>();
  output->names = {"lm_head.weight"};
  output->parts = {source.tensor("lm_head.weight") ? require_matrix(source, "lm_head.weight", c.vocab_size, c.d_model)
                                                   : embedding_table_};
  output_ = keep(-1, std::move(output));
  output_norm_ = norm_weight(source, "model.norm.weight", c.d_model);
}

std::unique_ptr<BackendTensor> DecoderModel::norm_weight(const ModelSource& source, const std::string& name,
                                                         int64_t n) const {
  std::vector<float> w = require_vector(source, name, n);
  if (config_.norm_weight_offset != 0)
    for (float& v : w) v += config_.norm_weight_offset;
  return be_->vector(w);
}

const StackedLinear* DecoderModel::add_linear(int layer, const ModelSource& source, std::vector<MatrixSpec> specs) {
  auto stack = std::make_unique<StackedLinear>();
  for (MatrixSpec& s : specs) {
    stack->parts.push_back(require_matrix(source, s.name, s.rows, s.cols));
    stack->names.push_back(std::move(s.name));
  }
  return keep(layer, std::move(stack));
}

const StackedLinear* DecoderModel::keep(int layer, std::unique_ptr<StackedLinear> stack) {
  MARLIN_CHECK(layer >= -1 && layer < config_.n_layers, "model: no layer {}", layer);
  stack->uploaded = be_->linear(stack->parts);
  for (size_t i = 0; i < stack->names.size(); ++i) parts_by_name_[stack->names[i]] = {stack.get(), nullptr, i};
  if (layer >= 0) layer_groups_[size_t(layer)].push_back({stack->names});
  return linears_.emplace_back(std::move(stack)).get();
}

const ExpertStack* DecoderModel::add_experts(int layer, const ModelSource& source,
                                             std::vector<std::array<std::string, 3>> names, int64_t d_ffn,
                                             int router_group, std::vector<float> score_bias) {
  MARLIN_CHECK(layer >= 0 && layer < config_.n_layers, "model: no layer {}", layer);
  const int64_t d = config_.d_model;
  auto stack = std::make_unique<ExpertStack>();
  auto& groups = layer_groups_[size_t(layer)];
  stack->first_group = int(groups.size());
  stack->layer = layer;
  stack->router_group = router_group;
  for (auto& n : names) {
    stack->experts.push_back({require_matrix(source, n[0], d_ffn, d), require_matrix(source, n[1], d_ffn, d),
                              require_matrix(source, n[2], d, d_ffn)});
    for (size_t i = 0; i < 3; ++i) parts_by_name_[n[i]] = {nullptr, stack.get(), 3 * (stack->names.size()) + i};
    groups.push_back({{n[0], n[1]}});
    groups.push_back({{n[2]}});
    stack->names.push_back(std::move(n));
  }
  stack->score_bias = std::move(score_bias);
  stack->uploaded = be_->experts(stack->experts, stack->score_bias);
  return expert_stacks_.emplace_back(std::move(stack)).get();
}

std::vector<LinearGroup> DecoderModel::linear_groups(int layer) const {
  MARLIN_CHECK(layer >= 0 && layer < config_.n_layers, "model: no layer {}", layer);
  return layer_groups_[size_t(layer)];
}

std::optional<SparseMlpGroups> DecoderModel::sparse_mlp_groups(int layer) const {
  MARLIN_CHECK(layer >= 0 && layer < config_.n_layers, "model: no layer {}", layer);
  for (const auto& stack : expert_stacks_) {
    if (stack->layer != layer || stack->router_group < 0) continue;
    const auto& router = layer_groups_[size_t(layer)][size_t(stack->router_group)].weights;
    MARLIN_CHECK(router.size() == 1, "model: layer {}'s router group holds {} weights", layer, router.size());
    return SparseMlpGroups{stack->router_group, router.front(), stack->names};
  }
  return std::nullopt;
}

void DecoderModel::replace_weight(const std::string& name, const QuantTensor& weight) {
  const auto it = parts_by_name_.find(name);
  MARLIN_CHECK(it != parts_by_name_.end(), "model: no linear weight '{}'", name);
  const PartRef& ref = it->second;
  QuantTensor* part = nullptr;
  if (ref.stack) {
    part = &ref.stack->parts[ref.part];
  } else {
    ExpertWeights& e = ref.experts->experts[ref.part / 3];
    part = ref.part % 3 == 0 ? &e.gate : ref.part % 3 == 1 ? &e.up : &e.down;
  }
  MARLIN_CHECK(weight.rows == part->rows && weight.cols == part->cols,
               "model: '{}' is {} x {}, the replacement {} x {}", name, part->rows, part->cols, weight.rows, weight.cols);
  *part = weight;
  if (ref.stack) {
    ref.stack->uploaded = be_->linear(ref.stack->parts);
  } else {
    ref.experts->uploaded = be_->experts(ref.experts->experts, ref.experts->score_bias);
  }
}

void DecoderModel::embed(std::span<const int32_t> tokens, float* x) const {
  check_tokens(tokens);
  for (size_t t = 0; t < tokens.size(); ++t)
    dequantize_row(embedding_table_, tokens[t], x + t * size_t(config_.d_model));
  if (config_.embedding_scale != 1.0f)
    for (size_t i = 0; i < tokens.size() * size_t(config_.d_model); ++i) x[i] *= config_.embedding_scale;
}

void DecoderModel::run_layer(int layer, float* x, int64_t n, KvCache& cache, const LinearInputObserver& observer) {
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
  be_->rms_norm(xa, input_norm(layer), config_.rms_eps, h);
  block(layer, xa, h, cache, observer ? &observer : nullptr, nullptr);
  std::copy_n(host, n * d, x);
}

std::unique_ptr<KvCache> DecoderModel::new_cache(int64_t capacity, int sequences, const KvCacheLayout& layout) const {
  MARLIN_CHECK(capacity > 0, "context size must be positive");
  MARLIN_CHECK(sequences >= 1 && sequences <= be_->max_step_tokens(), "a cache holds 1 to {} sequences, not {}",
               be_->max_step_tokens(), sequences);
  MARLIN_CHECK(layout.block_size >= 0 && layout.blocks >= 0, "kv cache: block size {} and block count {}",
               layout.block_size, layout.blocks);
  return be_->new_cache(capacity, sequences, layout);
}

void DecoderModel::decode_sequences(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                                    float* logits) {
  decode_step(seqs, tokens, cache, {logits, nullptr, nullptr});
}

void DecoderModel::decode_sequences_sample(std::span<const int32_t> seqs, std::span<const int32_t> tokens,
                                           KvCache& cache, const SampleBatch& requests, int32_t* next) {
  MARLIN_CHECK(requests.rows.size() == tokens.size(), "decode: {} sampling requests for {} sequences",
               requests.rows.size(), tokens.size());
  check_sample_batch(requests.rows, requests.penalties, config_.vocab_size);  // before the cache advances
  decode_step(seqs, tokens, cache, {nullptr, &requests, next});
}

void DecoderModel::forward_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache, float* logits,
                                    bool all_logits) {
  feed(seq, tokens, cache, {logits, nullptr, nullptr}, all_logits);
}

int32_t DecoderModel::sample_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache,
                                      const SampleBatch& request) {
  MARLIN_CHECK(request.rows.size() == 1, "forward_sample: {} requests for one sequence", request.rows.size());
  check_sample_batch(request.rows, request.penalties, config_.vocab_size);  // before the cache advances
  int32_t next = 0;
  feed(seq, tokens, cache, {nullptr, &request, &next}, false);
  return next;
}

void DecoderModel::check_tokens(std::span<const int32_t> tokens) const {
  for (int32_t t : tokens)
    MARLIN_CHECK(t >= 0 && t < config_.vocab_size, "token id {} is outside the vocabulary (size {})", t,
                 config_.vocab_size);
}

// One token for each of `seqs` (distinct sequences of the cache, each at its own length).
void DecoderModel::decode_step(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                               Output out) {
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
void DecoderModel::feed(int seq, std::span<const int32_t> tokens, KvCache& cache, Output out, bool all_logits) {
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

DecoderModel::GqaAttention DecoderModel::add_gqa_attention(int li, const ModelSource& source, bool qk_norm) {
  const ModelConfig& c = config_;
  const int64_t d = c.d_model, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  const std::string p = "model.layers." + std::to_string(li) + ".self_attn.";
  GqaAttention a;
  if (qk_norm) {
    a.q_norm = be_->vector(require_vector(source, p + "q_norm.weight", c.head_dim));
    a.k_norm = be_->vector(require_vector(source, p + "k_norm.weight", c.head_dim));
  }
  a.qkv = add_linear(li, source, {{p + "q_proj.weight", qd, d}, {p + "k_proj.weight", kvd, d}, {p + "v_proj.weight", kvd, d}});
  a.wo = add_linear(li, source, {{p + "o_proj.weight", d, qd}});
  return a;
}

DecoderModel::SwigluMlp DecoderModel::add_swiglu_mlp(int li, const ModelSource& source, const std::string& prefix,
                                                     int64_t d_ffn) {
  const int64_t d = config_.d_model;
  const std::string p = "model.layers." + std::to_string(li) + "." + prefix;
  SwigluMlp mlp;
  mlp.gate_up = add_linear(li, source, {{p + "gate_proj.weight", d_ffn, d}, {p + "up_proj.weight", d_ffn, d}});
  mlp.down = add_linear(li, source, {{p + "down_proj.weight", d, d_ffn}});
  mlp.d_ffn = d_ffn;
  return mlp;
}

void DecoderModel::gqa_attention(int li, const GqaAttention& a, Act h, Act delta, KvCache& cache,
                                 const LinearInputObserver* observer, int group) {
  const ModelConfig& c = config_;
  const int64_t n = h.rows, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  const Act qkv = be_->activations(kQkv, n, qd + 2 * kvd, ActType::kF16);
  const Act attn = be_->activations(kAttn, n, qd, ActType::kF16);
  observe(observer, group, h);
  be_->matmul(**a.qkv, h, qkv);
  if (a.q_norm)
    be_->qk_norm_rope_store_kv(qkv, *a.q_norm, *a.k_norm, c.rms_eps, cache, li);
  else
    be_->rope_store_kv(qkv, cache, li);
  be_->attention(qkv, cache, li, attn);
  observe(observer, group + 1, attn);
  be_->matmul(**a.wo, attn, delta);
}

void DecoderModel::swiglu_mlp(const SwigluMlp& mlp, Act h, Act delta, const LinearInputObserver* observer, int group) {
  const Act gate_up = be_->activations(kGateUp, h.rows, 2 * mlp.d_ffn, ActType::kF16);
  const Act hidden = be_->activations(kHidden, h.rows, mlp.d_ffn, ActType::kF16);
  observe(observer, group, h);
  be_->matmul(**mlp.gate_up, h, gate_up);
  be_->silu_mul(gate_up, hidden);
  observe(observer, group + 1, hidden);
  be_->matmul(**mlp.down, hidden, delta);
}

void DecoderModel::residual_add(Act x, Act delta, Act h, const BackendTensor* next_norm) {
  if (next_norm) {
    be_->add_rms_norm(x, delta, *next_norm, config_.rms_eps, h);
  } else {
    be_->add(x, delta);
  }
}

void DecoderModel::forward_chunk(const StepTokens& step, KvCache& cache, Output out, bool all_logits) {
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
    // input norm, or the output norm after the last block.
    const Act h = be_->activations(kNormed, n, c.d_model, ActType::kF16);
    be_->rms_norm(x, input_norm(0), c.rms_eps, h);
    for (int li = 0; li < c.n_layers; ++li) {
      const bool last = li + 1 == c.n_layers;
      const BackendTensor* next_norm = !last ? &input_norm(li + 1) : out.any() ? output_norm_.get() : nullptr;
      block(li, x, h, cache, nullptr, next_norm);
    }
    if (!out.any()) return;
    be_->matmul(**output_, act_rows(h, first, rows), be_->activations(kLogits, rows, c.vocab_size, ActType::kF32));
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

}  // namespace marlin
