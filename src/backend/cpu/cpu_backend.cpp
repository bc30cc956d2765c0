#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/attention.h"
#include "backend/cpu/cpu_kv_cache.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/moe.h"
#include "backend/cpu/mla_attention.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"
#include "model/rope.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

struct CpuLinear final : BackendLinear {
  std::vector<QuantTensor> parts;  // views into the model source, stacked by rows
};

struct CpuExperts final : BackendExperts {
  std::vector<ExpertWeights> experts;  // views into the model source
  std::vector<float> score_bias;       // per routed expert, or empty
};

struct CpuVector final : BackendTensor {
  std::vector<float> values;
};

struct CpuEmbedding final : BackendTensor {
  QuantTensor table;
};

float* f32(Act a) { return static_cast<float*>(a.data); }

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(ThreadPool& pool) : pool_(pool) {}

  DeviceKind kind() const override { return DeviceKind::kCpu; }
  std::string description() const override { return fmt::format("CPU, {} threads", pool_.size()); }

  int64_t max_step_tokens() const override { return 256; }

  // Every thread copies its slice of 256 MiB, several times; the best time counts.
  double copy_bandwidth() override {
    const size_t bytes = size_t(256) << 20;
    std::vector<char> from(bytes, 1), to(bytes, 0);
    double best = 1e30;
    for (int rep = 0; rep < 4; ++rep) {
      const auto start = std::chrono::steady_clock::now();
      pool_.parallel_for(int64_t(bytes), int64_t(1) << 20, [&](int64_t begin, int64_t end) {
        std::memcpy(to.data() + begin, from.data() + begin, size_t(end - begin));
      });
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return 2.0 * double(bytes) / best;
  }

  void configure(const ModelConfig& config) override {
    config_ = config;
    rope_ = std::make_unique<Rope>(config.rope, config.head_dim);
    if (config.sliding_rope) sliding_rope_ = std::make_unique<Rope>(*config.sliding_rope, config.head_dim);
  }

  std::unique_ptr<BackendLinear> linear(std::span<const QuantTensor> parts) override {
    MARLIN_CHECK(!parts.empty(), "cpu backend: a linear layer needs at least one weight");
    auto w = std::make_unique<CpuLinear>();
    w->cols = parts[0].cols;
    for (const QuantTensor& p : parts) {
      MARLIN_CHECK(p.cols == w->cols, "cpu backend: stacked weights of {} and {} columns", w->cols, p.cols);
      w->rows += p.rows;
      w->parts.push_back(p);
    }
    return w;
  }

  std::unique_ptr<BackendExperts> experts(std::span<const ExpertWeights> experts,
                                          std::span<const float> score_bias) override {
    MARLIN_CHECK(!experts.empty(), "cpu backend: a sparse MLP needs at least one expert");
    MARLIN_CHECK(score_bias.size() <= experts.size(), "cpu backend: {} score biases for {} experts", score_bias.size(),
                 experts.size());
    auto x = std::make_unique<CpuExperts>();
    x->n_experts = int(experts.size());
    x->has_score_bias = !score_bias.empty();
    x->score_bias.assign(score_bias.begin(), score_bias.end());
    x->d_model = experts[0].gate.cols;
    x->d_ffn = experts[0].gate.rows;
    for (const ExpertWeights& e : experts) {
      const bool same = e.gate.rows == x->d_ffn && e.gate.cols == x->d_model && e.up.rows == x->d_ffn &&
                        e.up.cols == x->d_model && e.down.rows == x->d_model && e.down.cols == x->d_ffn;
      MARLIN_CHECK(same, "cpu backend: experts of one layer differ in shape");
    }
    x->experts.assign(experts.begin(), experts.end());
    return x;
  }

  std::unique_ptr<BackendTensor> vector(std::span<const float> values) override {
    auto v = std::make_unique<CpuVector>();
    v->values.assign(values.begin(), values.end());
    return v;
  }

  std::unique_ptr<BackendTensor> embedding(const QuantTensor& table) override {
    auto e = std::make_unique<CpuEmbedding>();
    e->table = table;
    return e;
  }

  std::unique_ptr<KvCache> new_cache(int64_t capacity, int sequences, const KvCacheLayout& layout) override {
    return std::make_unique<CpuKvCache>(kv_geometry(config_), capacity, sequences, layout);
  }

  Act activations(int slot, int64_t rows, int64_t cols, ActType) override {
    if (size_t(slot) >= buffers_.size()) buffers_.resize(size_t(slot) + 1);
    auto& b = buffers_[size_t(slot)];
    if (b.size() < size_t(rows * cols)) b.resize(size_t(rows * cols));
    return {b.data(), rows, cols, ActType::kF32};
  }
  float* host_data(const Act& a) override { return f32(a); }

  void begin_step(const StepTokens& step, KvCache& cache) override {
    ids_.assign(step.ids.begin(), step.ids.end());
    several_ = step.several();
    seqs_.resize(ids_.size());
    positions_.resize(ids_.size());
    for (size_t t = 0; t < ids_.size(); ++t) {
      seqs_[t] = step.sequence(int64_t(t));
      positions_[t] = step.position(int64_t(t));
    }
    angles_.resize(ids_.size() * size_t(config_.head_dim));
    for (size_t t = 0; t < ids_.size(); ++t) rope_->angles(position(int64_t(t)), &angles_[t * size_t(config_.head_dim)]);
    if (sliding_rope_) {
      sliding_angles_.resize(angles_.size());
      for (size_t t = 0; t < ids_.size(); ++t)
        sliding_rope_->angles(position(int64_t(t)), &sliding_angles_[t * size_t(config_.head_dim)]);
    }
  }

  void embed(const BackendTensor& table, Act x) override {
    const auto& e = static_cast<const CpuEmbedding&>(table);
    for (size_t t = 0; t < ids_.size(); ++t) dequantize_row(e.table, ids_[t], f32(x) + t * size_t(x.cols));
    if (config_.embedding_scale != 1.0f)
      for (int64_t i = 0; i < x.rows * x.cols; ++i) f32(x)[i] *= config_.embedding_scale;
  }

  void rms_norm(Act x, const BackendTensor& weight, float eps, Act out) override {
    const float* w = static_cast<const CpuVector&>(weight).values.data();
    for (int64_t r = 0; r < x.rows; ++r) cpu::rms_norm(f32(x) + r * x.cols, w, eps, x.cols, f32(out) + r * x.cols);
  }

  void rms_norm_rows(Act a, const BackendTensor& weight, float eps) override { rms_norm(a, weight, eps, a); }

  void add_rms_norm(Act x, Act delta, const BackendTensor& weight, float eps, Act out) override {
    add(x, delta);
    rms_norm(x, weight, eps, out);
  }

  void add(Act x, Act delta) override { cpu::add_inplace(f32(x), f32(delta), x.rows * x.cols); }

  void matmul(const BackendLinear& w, Act in, Act out) override {
    const auto& l = static_cast<const CpuLinear&>(w);
    if (l.parts.size() == 1) return cpu::matmul(l.parts[0], f32(in), in.rows, f32(out), pool_);
    // Stacked weights: each part's rows land in its column range of `out` (directly for one row).
    int64_t col0 = 0;
    for (const QuantTensor& p : l.parts) {
      if (in.rows == 1) {
        cpu::matmul(p, f32(in), 1, f32(out) + col0, pool_);
        col0 += p.rows;
        continue;
      }
      part_out_.resize(size_t(in.rows * p.rows));
      cpu::matmul(p, f32(in), in.rows, part_out_.data(), pool_);
      for (int64_t r = 0; r < in.rows; ++r)
        std::copy_n(&part_out_[size_t(r * p.rows)], p.rows, f32(out) + r * out.cols + col0);
      col0 += p.rows;
    }
  }

  void qk_norm(Act qkv, const BackendTensor& q_weight, const BackendTensor& k_weight, float eps) override {
    const float* qw = static_cast<const CpuVector&>(q_weight).values.data();
    const float* kw = static_cast<const CpuVector&>(k_weight).values.data();
    const int64_t hd = config_.head_dim;
    for (int64_t t = 0; t < qkv.rows; ++t) {
      float* head = f32(qkv) + t * qkv.cols;
      for (int h = 0; h < config_.n_heads + config_.n_kv_heads; ++h, head += hd)
        cpu::rms_norm(head, h < config_.n_heads ? qw : kw, eps, hd, head);
    }
  }

  void rope_store_kv(Act qkv, KvCache& cache, int layer) override {
    auto& kv = static_cast<CpuKvCache&>(cache);
    const int64_t hd = config_.head_dim, qd = config_.n_heads * hd, kvd = config_.n_kv_heads * hd;
    const bool sliding = sliding_rope_ && config_.window(layer) > 0;
    const Rope& rope = sliding ? *sliding_rope_ : *rope_;
    const std::vector<float>& angles = sliding ? sliding_angles_ : angles_;
    for (int64_t t = 0; t < qkv.rows; ++t) {
      float* row = f32(qkv) + t * qkv.cols;
      const float* cs = &angles[size_t(t * hd)];
      rope.rotate(row, config_.n_heads, cs);
      rope.rotate(row + qd, config_.n_kv_heads, cs);
      for (int h = 0; h < config_.n_kv_heads; ++h) {
        std::copy_n(row + qd + h * hd, hd, kv.key(sequence(t), layer, h, position(t)));
        std::copy_n(row + qd + kvd + h * hd, hd, kv.value(sequence(t), layer, h, position(t)));
      }
    }
  }

  void attention(Act qkv, KvCache& cache, int layer, Act out) override {
    const AttentionShape shape{config_.n_heads, config_.n_kv_heads, config_.head_dim, config_.query_scale(),
                               config_.window(layer)};
    const auto& kv = static_cast<const CpuKvCache&>(cache);
    if (!several_)
      return causal_attention(shape, f32(qkv), qkv.cols, qkv.rows, positions_[0], kv, seqs_[0], layer, f32(out), pool_);
    for (int64_t t = 0; t < qkv.rows; ++t)  // one query per sequence
      causal_attention(shape, f32(qkv) + t * qkv.cols, qkv.cols, 1, position(t), kv, sequence(t), layer,
                       f32(out) + t * out.cols, pool_);
  }

  void moe(const BackendExperts& experts, Act h, Act router_logits, const MoeRouting& routing, Act out,
           const ExpertInputObserver* observer) override {
    const auto& x = static_cast<const CpuExperts&>(experts);
    const int routed = x.n_experts - routing.n_shared;
    MARLIN_CHECK(h.cols == x.d_model && out.cols == x.d_model && router_logits.cols == routed &&
                     router_logits.rows == h.rows && out.rows == h.rows,
                 "cpu moe: activations do not fit {} experts of width {}", x.n_experts, x.d_model);
    MARLIN_CHECK(!x.has_score_bias || int(x.score_bias.size()) == routed, "cpu moe: {} score biases for {} experts",
                 x.score_bias.size(), routed);
    cpu::moe_forward(x.experts, x.score_bias, f32(h), h.rows, h.cols, f32(router_logits), routing, f32(out), pool_,
                     moe_scratch_, observer);
  }

  void mla_store_kv(Act kv_a, const BackendTensor& kv_norm, float eps, KvCache& cache, int layer) override {
    const MlaConfig& m = config_.mla;
    MARLIN_CHECK(m.enabled() && kv_a.cols == m.kv_lora_rank + m.qk_rope_head_dim,
                 "mla_store_kv: rows of {} values, expected kv_lora_rank + qk_rope_head_dim", kv_a.cols);
    auto& kv = static_cast<CpuKvCache&>(cache);
    const float* w = static_cast<const CpuVector&>(kv_norm).values.data();
    for (int64_t t = 0; t < kv_a.rows; ++t) {
      const float* row = f32(kv_a) + t * kv_a.cols;
      float* dst = kv.key(sequence(t), layer, 0, position(t));
      cpu::rms_norm(row, w, eps, m.kv_lora_rank, dst);
      std::copy_n(row + m.kv_lora_rank, m.qk_rope_head_dim, dst + m.kv_lora_rank);
      rope_->rotate(dst + m.kv_lora_rank, 1, &angles_[size_t(t * config_.head_dim)]);
    }
  }

  void mla_attention(Act q, const BackendTensor& kv_up, KvCache& cache, int layer, Act out) override {
    const MlaConfig& m = config_.mla;
    const MlaShape shape{config_.n_heads, m.qk_nope_head_dim, m.qk_rope_head_dim, m.kv_lora_rank, m.v_head_dim,
                         m.softmax_scale};
    const int64_t q_head = m.qk_nope_head_dim + m.qk_rope_head_dim;
    const auto& up = static_cast<const CpuVector&>(kv_up).values;
    MARLIN_CHECK(q.cols == config_.n_heads * q_head && out.cols == int64_t(config_.n_heads) * m.v_head_dim &&
                     int64_t(up.size()) == int64_t(config_.n_heads) * (m.qk_nope_head_dim + m.v_head_dim) * m.kv_lora_rank,
                 "mla_attention: q of {} and out of {} columns do not fit the model", q.cols, out.cols);
    // The queries with q_pe rotated by each token's position (q itself stays as it is).
    rotated_q_.assign(f32(q), f32(q) + q.rows * q.cols);
    for (int64_t t = 0; t < q.rows; ++t)
      for (int h = 0; h < config_.n_heads; ++h)
        rope_->rotate(&rotated_q_[size_t(t * q.cols + h * q_head + m.qk_nope_head_dim)], 1,
                      &angles_[size_t(t * config_.head_dim)]);
    const auto& kv = static_cast<const CpuKvCache&>(cache);
    if (!several_)
      return mla_causal_attention(shape, rotated_q_.data(), q.cols, q.rows, positions_[0], up.data(), kv, seqs_[0],
                                  layer, f32(out), pool_);
    for (int64_t t = 0; t < q.rows; ++t)  // one query per sequence
      mla_causal_attention(shape, &rotated_q_[size_t(t * q.cols)], q.cols, 1, position(t), up.data(), kv, sequence(t),
                           layer, f32(out) + t * out.cols, pool_);
  }

  void silu_mul(Act gate_up, Act out) override {
    const int64_t f = out.cols;
    for (int64_t r = 0; r < gate_up.rows; ++r) {
      float* gate = f32(gate_up) + r * gate_up.cols;
      cpu::silu_mul(gate, gate + f, f);
      std::copy_n(gate, f, f32(out) + r * f);
    }
  }

  void gelu_tanh_mul(Act gate_up, Act out) override {
    const int64_t f = out.cols;
    for (int64_t r = 0; r < gate_up.rows; ++r) {
      float* gate = f32(gate_up) + r * gate_up.cols;
      cpu::gelu_tanh_mul(gate, gate + f, f);
      std::copy_n(gate, f, f32(out) + r * f);
    }
  }

  // Step token t: its sequence and position.
  int sequence(int64_t t) const { return seqs_[size_t(t)]; }
  int64_t position(int64_t t) const { return positions_[size_t(t)]; }

  void to_host(Act a, float* out) override {
    if (out != a.data) std::copy_n(f32(a), a.rows * a.cols, out);
  }

  void sample(Act logits, std::span<const SampleRow> rows, std::span<const TokenCount> penalties,
              int32_t* tokens) override {
    MARLIN_CHECK(int64_t(rows.size()) == logits.rows, "sample: {} requests for {} rows", rows.size(), logits.rows);
    check_sample_batch(rows, penalties, logits.cols);
    for (size_t r = 0; r < rows.size(); ++r)
      tokens[r] = sample_row(f32(logits) + int64_t(r) * logits.cols, logits.cols, rows[r], penalties, sample_scratch_);
  }

 private:
  ThreadPool& pool_;
  ModelConfig config_;
  std::unique_ptr<Rope> rope_, sliding_rope_;  // sliding_rope_: of sliding-window layers, when it differs
  std::vector<std::vector<float>> buffers_;
  std::vector<float> part_out_;
  std::vector<float> rotated_q_;  // mla_attention's queries with q_pe rotated
  std::vector<int32_t> ids_;
  std::vector<int> seqs_;          // per step token
  std::vector<int64_t> positions_;  // per step token
  bool several_ = false;  // a decode step of several sequences, one token each
  std::vector<float> angles_, sliding_angles_;  // cos/sin per step token
  SampleScratch sample_scratch_;
  cpu::MoeScratch moe_scratch_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool) { return std::make_unique<CpuBackend>(pool); }

}  // namespace marlin
