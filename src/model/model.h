// A loaded model: runs tokens through the network and returns next-token logits.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "core/thread_pool.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace marlin {

class ModelSource;

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // A cache for one sequence of at most `capacity` positions.
  virtual std::unique_ptr<KvCache> new_cache(int64_t capacity) const = 0;

  // Feeds `tokens` at positions cache.length() onwards and appends them to the cache.
  // Writes vocab_size logits for the last token, or for every token when `all_logits`.
  virtual void forward(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_logits) = 0;
};

// Builds the network the source describes. The source must outlive the model (weights stay
// where the source keeps them, usually a mapped file).
std::unique_ptr<Model> load_model(const ModelSource& source, ThreadPool& pool);

}  // namespace marlin
