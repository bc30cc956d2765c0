// A GGUF file as a ModelSource: GGUF tensor names are mapped to Hugging Face names, and weights
// stay in their GGUF block formats.
#pragma once

#include <memory>
#include <string>

#include "model/model_source.h"

namespace marlin {

class GgufFile;

std::unique_ptr<ModelSource> open_gguf_source(const std::string& path);

// The GGUF name of a Hugging Face tensor name for Llama-family files ("model.layers.3.mlp.up_proj.weight"
// -> "blk.3.ffn_up.weight"); empty when there is none.
std::string gguf_tensor_name(std::string_view hf_name);

}  // namespace marlin
