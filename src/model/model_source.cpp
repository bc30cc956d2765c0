#include "model/model_source.h"

#include <filesystem>

#include "core/error.h"
#include "model/gguf_source.h"

namespace marlin {

std::unique_ptr<ModelSource> open_model_source(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MARLIN_CHECK(fs::exists(path, ec), "model '{}' does not exist", path);
  // GGUF files announce themselves by their magic; everything else by its shape.
  return open_gguf_source(path);
}

}  // namespace marlin
