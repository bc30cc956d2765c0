#include "model/model.h"

#include <string>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/llama.h"

namespace marlin {

std::unique_ptr<Model> load_model(const GgufFile& file, ThreadPool& pool) {
  const std::string arch = file.get_string("general.architecture").value_or("");
  if (arch == "llama") return load_llama(file, pool);
  fail("model: architecture '{}' is not supported yet (supported: llama)", arch);
}

}  // namespace marlin
