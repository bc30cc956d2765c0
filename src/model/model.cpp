#include "model/model.h"

#include <string>

#include "core/error.h"
#include "model/llama.h"
#include "model/model_source.h"

namespace marlin {

std::unique_ptr<Model> load_model(const ModelSource& source, ThreadPool& pool, DeviceKind device) {
  const std::string& arch = source.config().architecture;
  if (arch == "llama") return load_llama(source, make_backend(device, pool));
  fail("model: architecture '{}' is not supported yet (supported: llama)", arch);
}

}  // namespace marlin
