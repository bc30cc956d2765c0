#include "model/model.h"

#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/deepseek.h"
#include "model/gemma3.h"
#include "model/llama.h"
#include "model/mixtral.h"
#include "model/model_source.h"
#include "model/qwen3_moe.h"

namespace marlin {

std::unique_ptr<Model> load_model(const ModelSource& source, ThreadPool& pool, DeviceKind device) {
  const std::string& arch = source.config().architecture;
  const bool sparse = source.config().moe.n_experts > 0;
  if (arch == "llama" && sparse) return load_mixtral(source, make_backend(device, pool));
  if (arch == "llama" || arch == "qwen3") return load_llama(source, make_backend(device, pool));
  if (arch == "qwen3moe") return load_qwen3_moe(source, make_backend(device, pool));
  if (arch == "deepseek2" || arch == "deepseek3" || arch == "glm4moelite")
    return load_deepseek(source, make_backend(device, pool));
  if (arch == "gemma3") return load_gemma3(source, make_backend(device, pool));
  fail("model: architecture '{}' is not supported yet (supported: llama, qwen3, llama with experts (Mixtral), "
       "qwen3moe, deepseek2, deepseek3, glm4moelite, gemma3)",
       arch);
}

namespace {

// 0, 1, ..., one per sequence of the cache; throws unless there is one token per sequence.
std::vector<int32_t> every_sequence(std::span<const int32_t> tokens, const KvCache& cache) {
  MARLIN_CHECK(int64_t(tokens.size()) == cache.sequences(), "decode_batch: {} tokens for {} sequences",
               tokens.size(), cache.sequences());
  std::vector<int32_t> seqs(tokens.size());
  std::iota(seqs.begin(), seqs.end(), 0);
  return seqs;
}

}  // namespace

void Model::decode_batch(std::span<const int32_t> tokens, KvCache& cache, float* logits) {
  decode_sequences(every_sequence(tokens, cache), tokens, cache, logits);
}

void Model::decode_batch_sample(std::span<const int32_t> tokens, KvCache& cache, const SampleBatch& requests,
                                int32_t* next) {
  decode_sequences_sample(every_sequence(tokens, cache), tokens, cache, requests, next);
}

}  // namespace marlin
