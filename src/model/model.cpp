#include "model/model.h"

#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/llama.h"
#include "model/model_source.h"

namespace marlin {

std::unique_ptr<Model> load_model(const ModelSource& source, ThreadPool& pool, DeviceKind device) {
  const std::string& arch = source.config().architecture;
  if (arch == "llama") return load_llama(source, make_backend(device, pool));
  fail("model: architecture '{}' is not supported yet (supported: llama)", arch);
}

void Model::decode_batch(std::span<const int32_t> tokens, KvCache& cache, float* logits) {
  MARLIN_CHECK(int64_t(tokens.size()) == cache.sequences(), "decode_batch: {} tokens for {} sequences",
               tokens.size(), cache.sequences());
  std::vector<int32_t> seqs(tokens.size());
  std::iota(seqs.begin(), seqs.end(), 0);
  decode_sequences(seqs, tokens, cache, logits);
}

}  // namespace marlin
