// A loaded model: runs tokens through the network and returns next-token logits.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace marlin {

class ModelSource;
struct QuantTensor;

// Linear layers of one block that read the same input (for calibration: one Hessian serves all).
struct LinearGroup {
  std::vector<std::string> weights;  // Hugging Face names, e.g. "model.layers.3.self_attn.q_proj.weight"
};

// The experts of one sparse MLP layer, for calibration: linear group `router_group` is the
// router's (its input, the normalized hidden state, is also every routed expert's input); experts
// holds each expert's Hugging Face names {gate, up, down}, the routed experts first, then the
// shared ones (MoeRouting::n_shared).
struct SparseMlpGroups {
  int router_group = 0;
  std::string router;
  std::vector<std::array<std::string, 3>> experts;
};

// Receives the input rows of linear group `group` (an index into linear_groups(layer)).
using LinearInputObserver = std::function<void(int group, const float* x, int64_t rows, int64_t cols)>;

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // A cache for one sequence of at most `capacity` positions, or for `sequences` that decode
  // together (decode_sequences), each up to `capacity` positions, paged by `layout` (by default
  // the backend's block size and enough blocks for every sequence at full capacity).
  virtual std::unique_ptr<KvCache> new_cache(int64_t capacity, int sequences = 1,
                                             const KvCacheLayout& layout = {}) const = 0;

  // Feeds `tokens` to sequence `seq` of the cache at positions cache.length(seq) onwards and
  // appends them to it. Writes vocab_size logits for the last token, or for every token when
  // `all_logits`.
  virtual void forward_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache, float* logits,
                                bool all_logits) = 0;
  // forward_sequence of sequence 0 (the only one of a one-sequence cache).
  void forward(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_logits) {
    forward_sequence(0, tokens, cache, logits, all_logits);
  }

  // Where the model runs, e.g. "CPU, 2 threads".
  virtual std::string device_description() const = 0;
  // The backend's copy bandwidth (Backend::copy_bandwidth), bytes/s, measured now.
  virtual double copy_bandwidth() = 0;

  // One decode step of several sequences of a cache, each at its own length: tokens[i] is
  // appended to sequence seqs[i] (distinct sequences); writes vocab_size logits per token.
  virtual void decode_sequences(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                                float* logits) = 0;
  // decode_sequences of every sequence of the cache in order: tokens[b] to sequence b.
  void decode_batch(std::span<const int32_t> tokens, KvCache& cache, float* logits);

  // Like forward_sequence() without logits, then samples the next token from the last token's
  // logits by `request` (one row; runtime/sampler.h makes it) where the model runs: only the id
  // comes back.
  virtual int32_t sample_sequence(int seq, std::span<const int32_t> tokens, KvCache& cache,
                                  const SampleBatch& request) = 0;
  // sample_sequence of sequence 0.
  int32_t forward_sample(std::span<const int32_t> tokens, KvCache& cache, const SampleBatch& request) {
    return sample_sequence(0, tokens, cache, request);
  }
  // Like decode_sequences(), then samples each sequence's next token by its row of `requests`
  // into next[i].
  virtual void decode_sequences_sample(std::span<const int32_t> seqs, std::span<const int32_t> tokens, KvCache& cache,
                                       const SampleBatch& requests, int32_t* next) = 0;
  // decode_sequences_sample of every sequence of the cache in order.
  void decode_batch_sample(std::span<const int32_t> tokens, KvCache& cache, const SampleBatch& requests,
                           int32_t* next);

  // Layer-wise execution, for calibrating quantizers block by block (marlin quantize; CPU only).
  virtual std::vector<LinearGroup> linear_groups(int layer) const = 0;
  // The sparse MLP of block `layer`, or nullopt for a dense block.
  virtual std::optional<SparseMlpGroups> sparse_mlp_groups(int) const { return std::nullopt; }
  // Hidden states of `tokens` entering the first block (tokens.size() × d_model).
  virtual void embed(std::span<const int32_t> tokens, float* x) const = 0;
  // Runs block `layer` in place on the hidden states of one sequence (positions 0..n_tokens-1,
  // using `cache`, which must be empty), reporting each linear group's input to `observer`.
  virtual void run_layer(int layer, float* x, int64_t n_tokens, KvCache& cache, const LinearInputObserver& observer) = 0;
  // From now on the linear `name` uses `weight` (same shape; its storage must outlive the model).
  virtual void replace_weight(const std::string& name, const QuantTensor& weight) = 0;
};

// Builds the network the source describes on `device` (the CPU backend runs on `pool`). The source
// and the pool must outlive the model (on the CPU, weights stay where the source keeps them,
// usually a mapped file).
std::unique_ptr<Model> load_model(const ModelSource& source, ThreadPool& pool, DeviceKind device = DeviceKind::kCpu);

}  // namespace marlin
