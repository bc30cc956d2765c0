// `marlin inspect` for what is not a GGUF file: a .marlin checkpoint or a Hugging Face folder
// (also GPTQ/AWQ), through its ModelSource: configuration, tensor formats and sizes.
#pragma once

#include <string>

namespace marlin::cli {

void inspect_model_source(const std::string& path, bool json, bool tensors);

}  // namespace marlin::cli
