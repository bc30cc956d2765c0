#include "model/model_source.h"

#include <filesystem>
#include <fstream>
#include <string_view>

#include "core/error.h"
#include "formats/hf_source.h"
#include "formats/marlin_source.h"
#include "model/gguf_source.h"

namespace marlin {

std::unique_ptr<ModelSource> open_model_source(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MARLIN_CHECK(fs::exists(path, ec), "model '{}' does not exist", path);
  if (fs::is_directory(path, ec)) return open_hf_source(path);
  // Files by their first bytes: GGUF has a magic; a .marlin checkpoint is a safetensors file.
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::string_view(magic, 4) == "GGUF") return open_gguf_source(path);
  if (path.ends_with(".marlin")) return open_marlin_source(path);
  if (path.ends_with(".gguf")) return open_gguf_source(path);  // reports what is wrong with it
  fail("model '{}' is neither a GGUF file, a .marlin checkpoint nor a Hugging Face folder", path);
}

}  // namespace marlin
