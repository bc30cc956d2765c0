// What every decoder-only architecture shares: the token embedding, the output norm and lm_head,
// feeding prompts in chunks, batched decode steps, sampling where the model runs, layer-wise
// calibration and weight replacement. An architecture (llama.cpp, ...) loads its blocks and
// describes one block's forward pass; everything else lives here.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"
#include "model/model_source.h"

namespace marlin {

// Linear weights that read the same input, stacked into one backend matrix (q, k, v → qkv), with
// each part's Hugging Face name.
struct StackedLinear {
  std::vector<std::string> names;
  std::vector<QuantTensor> parts;
  std::unique_ptr<BackendLinear> uploaded;
  const BackendLinear& operator*() const { return *uploaded; }
};

// The experts of one sparse MLP layer, uploaded as one BackendExperts, with each expert's
// Hugging Face names (gate, up, down). Calibration sees two linear groups per expert, from
// `first_group` on: expert e's gate and up at first_group + 2e, its down at first_group + 2e + 1.
struct ExpertStack {
  std::vector<std::array<std::string, 3>> names;
  std::vector<ExpertWeights> experts;
  std::vector<float> score_bias;  // the router's, one per routed expert, or empty
  std::unique_ptr<BackendExperts> uploaded;
  int first_group = 0;
  int layer = 0;
  int router_group = -1;  // the linear group of the router that feeds them (-1: none)
  const BackendExperts& operator*() const { return *uploaded; }
};

// A matrix of the source, by name and expected shape.
struct MatrixSpec {
  std::string name;
  int64_t rows = 0, cols = 0;
};

class DecoderModel : public Model {
 public:
  const ModelConfig& config() const override { return config_; }
  std::string device_description() const override { return be_->description(); }
  double copy_bandwidth() override { return be_->copy_bandwidth(); }

  std::unique_ptr<KvCache> new_cache(int64_t capacity, int sequences, const KvCacheLayout& layout) const override;
  void decode_sequences(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                        float* logits) override;
  void decode_sequences_sample(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                               const SampleBatch& requests, int32_t* next) override;
  void forward_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache, float* logits,
                        bool all_logits) override;
  int32_t sample_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache,
                          const SampleBatch& request) override;

  // The layer's stacked linears, in the order they were added (the order block() runs them).
  std::vector<LinearGroup> linear_groups(int layer) const override;
  std::optional<SparseMlpGroups> sparse_mlp_groups(int layer) const override;
  void embed(std::span<const int32_t> tokens, float* x) const override;
  void run_layer(int layer, float* x, int64_t n_tokens, KvCache& cache, const LinearInputObserver& observer) override;
  void replace_weight(const std::string& name, const QuantTensor& weight) override;

 protected:
  // Reads the embedding, output norm and lm_head (tied to the embedding when absent) and
  // configures the backend. `config` is the source's, possibly completed by the architecture.
  DecoderModel(const ModelSource& source, std::unique_ptr<Backend> backend, ModelConfig config);

  // The norm applied to the residual stream before block `layer` (its attention-input norm).
  virtual const BackendTensor& input_norm(int layer) const = 0;
  // One block on the step's hidden states x (rows × d_model), in place. On entry h holds x
  // normalized by input_norm(li); on exit, when next_norm is given, x normalized by next_norm
  // (the following block's input norm or the output norm). Calls observe() with each linear
  // group's input, in the order of linear_groups(li).
  virtual void block(int li, Act x, Act h, KvCache& cache, const LinearInputObserver* observer,
                     const BackendTensor* next_norm) = 0;

  // Loads `specs` from the source as one stacked linear of layer `layer` (-1: outside the blocks)
  // and uploads it; the pointer stays valid for the model's lifetime.
  const StackedLinear* add_linear(int layer, const ModelSource& source, std::vector<MatrixSpec> specs);
  // Loads the experts of layer `layer`, each named by {gate, up, down}, gate and up d_ffn × d_model,
  // down d_model × d_ffn, and uploads them with the router's score bias (Backend::experts); their
  // linear groups follow the layer's earlier ones. `router_group`: the linear group of the router
  // choosing among them (-1: none).
  const ExpertStack* add_experts(int layer, const ModelSource& source,
                                 std::vector<std::array<std::string, 3>> names, int64_t d_ffn,
                                 int router_group = -1, std::vector<float> score_bias = {});
  // The RMSNorm weight `name` (n values) with the config's norm_weight_offset added, uploaded.
  std::unique_ptr<BackendTensor> norm_weight(const ModelSource& source, const std::string& name, int64_t n) const;
  // Reports the input of linear group `group` to the observer, if any.
  void observe(const LinearInputObserver* observer, int group, const Act& a) const {
    if (observer) (*observer)(group, be_->host_data(a), a.rows, a.cols);
  }

  // --- Pieces most blocks share ---------------------------------------------------------------
  // Llama-style grouped-query attention: q, k, v stacked into qkv, optionally each q and k head
  // RMS-normalized (Qwen3), RoPE and the cache, causal attention, o_proj.
  struct GqaAttention {
    const StackedLinear* qkv = nullptr;
    const StackedLinear* wo = nullptr;
    std::unique_ptr<BackendTensor> q_norm, k_norm;  // both or neither
  };
  // A SwiGLU MLP: gate and up stacked, then down.
  struct SwigluMlp {
    const StackedLinear* gate_up = nullptr;
    const StackedLinear* down = nullptr;
    int64_t d_ffn = 0;
  };
  // Layer li's "model.layers.N.self_attn.{q,k,v,o}_proj" (and q_norm/k_norm when `qk_norm`).
  GqaAttention add_gqa_attention(int li, const ModelSource& source, bool qk_norm);
  // Layer li's "model.layers.N.<prefix>{gate,up,down}_proj" of width d_ffn.
  SwigluMlp add_swiglu_mlp(int li, const ModelSource& source, const std::string& prefix, int64_t d_ffn);
  // delta = o_proj(attention(qkv(h))), storing the step's keys and values of layer li; reports
  // linear groups `group` (h) and `group` + 1 (o_proj's input).
  void gqa_attention(int li, const GqaAttention& a, Act h, Act delta, KvCache& cache,
                     const LinearInputObserver* observer, int group);
  // delta = down(silu(gate(h)) · up(h)); reports groups `group` (h) and `group` + 1 (down's input).
  void swiglu_mlp(const SwigluMlp& mlp, Act h, Act delta, const LinearInputObserver* observer, int group);
  // A block's last residual add, x += delta, fused with next_norm into h when there is one.
  void residual_add(Act x, Act delta, Act h, const BackendTensor* next_norm);

  // Activation slots 0-2 are the decoder's (residual stream, normed rows, logits), 3-6 the shared
  // pieces'; blocks number theirs from here.
  static constexpr int kFirstBlockSlot = 7;

  std::unique_ptr<Backend> be_;
  ModelConfig config_;

 private:
  // What the last chunk of a step returns: logits, or tokens sampled from them (or nothing).
  struct Output {
    float* logits = nullptr;
    const SampleBatch* sampling = nullptr;
    int32_t* tokens = nullptr;
    bool any() const { return logits || sampling; }
  };

  // Uploads `stack` and keeps it (with its names) for layer `layer`, -1 outside the blocks.
  const StackedLinear* keep(int layer, std::unique_ptr<StackedLinear> stack);
  void check_tokens(std::span<const int32_t> tokens) const;
  void decode_step(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache, Output out);
  void feed(int seq, std::span<const int32_t> tokens, KvCache& cache, Output out, bool all_logits);
  void forward_chunk(const StepTokens& step, KvCache& cache, Output out, bool all_logits);

  QuantTensor embedding_table_{};
  std::unique_ptr<BackendTensor> embedding_, output_norm_;
  const StackedLinear* output_ = nullptr;
  // Every stacked linear, and where each Hugging Face name lives in them.
  std::vector<std::unique_ptr<StackedLinear>> linears_;
  std::vector<std::unique_ptr<ExpertStack>> expert_stacks_;
  std::vector<std::vector<LinearGroup>> layer_groups_;
  // A named weight: part `part` of a stacked linear, or of an expert stack (3 per expert).
  struct PartRef {
    StackedLinear* stack = nullptr;
    ExpertStack* experts = nullptr;
    size_t part = 0;
  };
  std::map<std::string, PartRef> parts_by_name_;
};

}  // namespace marlin
