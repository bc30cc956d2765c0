// The ops a transformer's forward pass calls, on one device (CPU or CUDA). Model code (src/model/)
// is written once against this interface; each backend owns its memory, its weight layouts and
// its kernels. No CUDA header is visible from here.
//
// Activations are backend memory named by Act views. The residual stream is kF32; other
// activations are requested as kF16, which a backend may widen (the CPU keeps everything fp32).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "backend/sampling.h"
#include "model/kv_cache.h"
#include "quant/format.h"

namespace marlin {

class ThreadPool;

enum class DeviceKind { kCpu, kCuda };

// "cpu" or "cuda"; throws marlin::Error naming the choices otherwise.
DeviceKind parse_device(const std::string& name);
const char* device_name(DeviceKind kind);

enum class ActType { kF32, kF16 };

// rows × cols activations in a backend's memory, row-major.
struct Act {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  ActType type = ActType::kF32;
};

// Rows [first, first + count) of `a`.
inline Act act_rows(const Act& a, int64_t first, int64_t count) {
  const int64_t bytes = a.type == ActType::kF32 ? 4 : 2;
  return {static_cast<char*>(a.data) + first * a.cols * bytes, count, a.cols, a.type};
}

// A weight matrix uploaded to a backend (possibly several stacked: q, k, v → one qkv).
class BackendLinear {
 public:
  virtual ~BackendLinear() = default;
  int64_t rows = 0;  // output features
  int64_t cols = 0;  // input features
};

// A vector (norm weights) or embedding table uploaded to a backend.
class BackendTensor {
 public:
  virtual ~BackendTensor() = default;
};

// One expert of a sparse MLP: a SwiGLU MLP, down · (silu(gate · x) ⊙ (up · x)).
// gate and up are d_ffn × d_model, down is d_model × d_ffn.
struct ExpertWeights {
  QuantTensor gate, up, down;
};

// The experts of one sparse MLP layer uploaded to a backend.
class BackendExperts {
 public:
  virtual ~BackendExperts() = default;
  int n_experts = 0;  // routed and shared
  bool has_score_bias = false;
  int64_t d_model = 0;
  int64_t d_ffn = 0;
};

// Receives, during a moe() op, the input rows of one expert's linears (calibration): the rows of
// h routed to `expert` (down = false, the input of gate and up, rows × d_model) or that
// expert's SwiGLU output (down = true, the input of down, rows × d_ffn). Experts no token chose
// are not reported.
using ExpertInputObserver =
    std::function<void(int expert, bool down, const float* x, int64_t rows, int64_t cols)>;

// The tokens of one forward step, in one of two forms:
//  - one sequence: ids at positions pos0, pos0 + 1, ... of sequence `seq` (a prompt, or one token);
//  - a decode step of several sequences (seqs not empty): ids[i] at position positions[i] of
//    sequence seqs[i], one token per sequence, each sequence at most once.
struct StepTokens {
  std::span<const int32_t> ids;
  int64_t pos0 = 0;
  int seq = 0;
  std::span<const int32_t> seqs;
  std::span<const int64_t> positions;

  static StepTokens one_sequence(std::span<const int32_t> ids, int64_t pos0, int seq = 0) {
    StepTokens s;
    s.ids = ids;
    s.pos0 = pos0;
    s.seq = seq;
    return s;
  }
  static StepTokens decode(std::span<const int32_t> ids, std::span<const int32_t> seqs,
                           std::span<const int64_t> positions) {
    StepTokens s;
    s.ids = ids;
    s.seqs = seqs;
    s.positions = positions;
    return s;
  }

  bool several() const { return !seqs.empty(); }
  int sequence(int64_t t) const { return several() ? seqs[size_t(t)] : seq; }
  int64_t position(int64_t t) const { return several() ? positions[size_t(t)] : pos0 + t; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind kind() const = 0;
  virtual std::string description() const = 0;  // e.g. "CPU, 2 threads" or "NVIDIA H100 80GB HBM3"
  // Measured now: bytes read plus bytes written per second by a large copy in the backend's memory
  // (the ceiling of a weight-streaming decode step). Takes a fraction of a second.
  virtual double copy_bandwidth() = 0;

  // --- Model setup -------------------------------------------------------------------------
  // Attention geometry and rotary embeddings of the model (once, before any other op). The config
  // also decides, per layer, the RoPE (rope_of) and the attention window (window) that
  // rope_store_kv and attention use, the score scale (query_scale) and the embedding scale.
  virtual void configure(const ModelConfig& config) = 0;
  // The most tokens one step may carry: longer prompts are fed in chunks of this size (big enough
  // for matmuls to reuse each weight across many rows, small enough to bound activation memory).
  virtual int64_t max_step_tokens() const = 0;
  // `parts` stacked by rows into one matrix of the same input width. The views must stay valid
  // as long as the backend may read them (the CPU backend reads them in place).
  virtual std::unique_ptr<BackendLinear> linear(std::span<const QuantTensor> parts) = 0;
  virtual std::unique_ptr<BackendTensor> vector(std::span<const float> values) = 0;
  // The experts of one sparse MLP layer (same shapes for all; views kept as linear() keeps
  // them): the routed experts, then the shared ones (MoeRouting::n_shared). score_bias: the
  // router's correction bias (one per routed expert) or empty. Backends without MoE support
  // throw marlin::Error (the default), so loading an MoE model there fails cleanly.
  virtual std::unique_ptr<BackendExperts> experts(std::span<const ExpertWeights> experts,
                                                  std::span<const float> score_bias = {});
  virtual std::unique_ptr<BackendTensor> embedding(const QuantTensor& table) = 0;
  // A cache of `sequences` sequences of up to `capacity` positions each, paged by `layout`.
  virtual std::unique_ptr<KvCache> new_cache(int64_t capacity, int sequences, const KvCacheLayout& layout) = 0;

  // --- Activations -------------------------------------------------------------------------
  // Room for `rows` × `cols` values; an Act stays valid until the next reserve call with `slot`.
  virtual Act activations(int slot, int64_t rows, int64_t cols, ActType type) = 0;
  // Host fp32 pointer to an Act's data on backends whose activations live in host memory
  // (calibration reads them); nullptr elsewhere.
  virtual float* host_data(const Act& a) = 0;

  // --- Ops (activations in, activations out) -----------------------------------------------
  // Uploads the step's token ids and positions; every op below refers to the current step.
  virtual void begin_step(const StepTokens& step, KvCache& cache) = 0;
  // x = the table's rows of the step's tokens, times the config's embedding_scale.
  virtual void embed(const BackendTensor& table, Act x) = 0;
  virtual void rms_norm(Act x, const BackendTensor& weight, float eps, Act out) = 0;
  // In place: each row of `a` (an activation requested as kF16, such as a block's output before
  // its residual add) becomes rms_norm(row) · weight, computed in fp32.
  virtual void rms_norm_rows(Act a, const BackendTensor& weight, float eps) = 0;
  // x += delta, then out = rms_norm(x) (the residual add fused with the next norm).
  virtual void add_rms_norm(Act x, Act delta, const BackendTensor& weight, float eps, Act out) = 0;
  virtual void add(Act x, Act delta) = 0;
  // out = in · Wᵀ
  virtual void matmul(const BackendLinear& w, Act in, Act out) = 0;
  // Per-head RMSNorm of the qkv rows in place, before RoPE (Qwen3, Gemma 3): each q head is
  // normalized over head_dim values and scaled by q_weight, each k head by k_weight (head_dim
  // values each); v is left alone.
  virtual void qk_norm(Act qkv, const BackendTensor& q_weight, const BackendTensor& k_weight, float eps) = 0;
  // Rotates the q and k heads of the qkv rows with the layer's RoPE and stores k and v in `cache`
  // for `layer`.
  virtual void rope_store_kv(Act qkv, KvCache& cache, int layer) = 0;
  // qk_norm, then rope_store_kv: one op, so that a backend may fuse them.
  virtual void qk_norm_rope_store_kv(Act qkv, const BackendTensor& q_weight, const BackendTensor& k_weight, float eps,
                                     KvCache& cache, int layer) {
    qk_norm(qkv, q_weight, k_weight, eps);
    rope_store_kv(qkv, cache, layer);
  }
  // Causal attention of the step's queries (from qkv) over the cache; out: rows × n_heads·head_dim.
  // A query at position p attends to positions [0, p], or (p - window, p] for a layer with a
  // sliding window; scores are scaled by the config's query_scale().
  virtual void attention(Act qkv, KvCache& cache, int layer, Act out) = 0;
  // The sparse MLP of a mixture-of-experts layer, for each row t of h (rows × d_model), with
  // R = n_experts - routing.n_shared routed experts:
  //   s = softmax(router_logits[t]) (or sigmoid of each, by routing.scoring);
  //   c_e = s_e + bias_e (the experts' score bias; 0 without one), the scores for choosing;
  //   with routing.n_groups > 1, the R experts form n_groups equal consecutive groups, each
  //   scored by its highest c (GroupScore::kMax) or the sum of its two highest (kTopTwoSum), and
  //   only experts of the routing.top_groups best groups may be chosen (ties: the lower group);
  //   E_t = the routing.top_k allowed experts of highest c (ties: the lower expert index first);
  //   w_e = s_e, divided by Σ_{E_t} s when routing.renormalize, then times routing.scale;
  //   out[t] = Σ_{e ∈ E_t} w_e · f_e(h[t]) + Σ_{shared j} f_j(h[t]),
  //   f_e(x) = down_e(silu(gate_e · x) ⊙ (up_e · x)).
  // router_logits (rows × R, fp32) come from an ordinary matmul with the router weight.
  // Tokens are grouped by expert so that each chosen expert runs one matmul over all its tokens.
  // `observer` (CPU only, calibration) sees each chosen expert's inputs (shared ones: every row).
  virtual void moe(const BackendExperts& experts, Act h, Act router_logits, const MoeRouting& routing, Act out,
                   const ExpertInputObserver* observer = nullptr);
  // --- Multi-head latent attention (ModelConfig::mla; DeepSeek-V2/V3, GLM-4.7-Flash) ----------
  // The cache (kv_geometry of the config) holds per token and layer one row of kv_lora_rank
  // normalized latent values c_kv followed by qk_rope_head_dim values of the RoPE'd shared key
  // k_pe. Backends without MLA throw (the defaults below).
  //
  // kv_a rows are kv_a_proj_with_mqa's output [latent: kv_lora_rank | k_pe: qk_rope_head_dim];
  // stores rms_norm(latent) · kv_norm (epsilon `eps`) and k_pe rotated by the token's position.
  virtual void mla_store_kv(Act kv_a, const BackendTensor& kv_norm, float eps, KvCache& cache, int layer);
  // kv_b_proj (n_heads · (qk_nope_head_dim + v_head_dim) rows of kv_lora_rank fp32 values,
  // row-major, per head first W_UK then W_UV) in the form mla_attention reads it: by default as
  // vector() uploads it (fp32); the CUDA backend keeps only an fp16 copy.
  virtual std::unique_ptr<BackendTensor> mla_kv_up(std::span<const float> values) { return vector(values); }
  // Causal attention of the step's queries over the cache, with the up-projections absorbed:
  // q rows are n_heads heads of [q_nope: qk_nope_head_dim | q_pe: qk_rope_head_dim] (q_pe not
  // yet rotated); kv_up is kv_b_proj uploaded by mla_kv_up(). Per head
  // the score of position j is softmax_scale · ((W_UKᵀ q_nope) · c_kv_j + rope(q_pe) · k_pe_j);
  // the head's output is W_UV (Σ_j p_j c_kv_j). out: rows × n_heads · v_head_dim (o_proj's input).
  virtual void mla_attention(Act q, const BackendTensor& kv_up, KvCache& cache, int layer, Act out);
  // gate_up rows are [gate | up]; out = silu(gate) · up.
  virtual void silu_mul(Act gate_up, Act out) = 0;
  // gate_up rows are [gate | up]; out = gelu(gate) · up, GELU in its tanh approximation
  // (0.5·g·(1 + tanh(sqrt(2/π)·(g + 0.044715·g³))), PyTorch's gelu_pytorch_tanh).
  virtual void gelu_tanh_mul(Act gate_up, Act out) = 0;
  // Copies fp32 values of `a` (rows × cols) to host memory.
  virtual void to_host(Act a, float* out) = 0;
  // Samples a token from each row of fp32 `logits` (rows × vocab) by that row's request
  // (backend/sampling.h; rows.size() == logits.rows) and writes the ids to host memory `tokens`;
  // the logits are modified (penalties). Runs after the step's ops, outside run().
  virtual void sample(Act logits, std::span<const SampleRow> rows, std::span<const TokenCount> penalties,
                      int32_t* tokens) = 0;

  // Runs `ops` (calls of the ops above for the current step). A backend may record them the
  // first time a step of this `shape_key` comes and replay the recording afterwards (CUDA
  // graphs); `shape_key` < 0 means never record.
  virtual void run(int64_t shape_key, const std::function<void()>& ops) { ops(); }
};

// The backend for `kind` (the CPU one runs on `pool`, which must outlive it). Throws
// marlin::Error when this build or machine cannot provide it.
std::unique_ptr<Backend> make_backend(DeviceKind kind, ThreadPool& pool);

// Whether this build has the CUDA backend and the machine a CUDA device for it.
bool cuda_device_present();

}  // namespace marlin
