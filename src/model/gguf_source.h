// A GGUF file as a ModelSource: GGUF tensor names are mapped to Hugging Face names, and weights
// stay in their GGUF block formats.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "model/model_source.h"

namespace marlin {

class GgufFile;

std::unique_ptr<ModelSource> open_gguf_source(const std::string& path);

// The GGUF name of a Hugging Face tensor name in files of `architecture` ("model.layers.3.mlp.up_proj.weight"
// -> "blk.3.ffn_up.weight"); empty when there is none. Architectures name some norms differently
// (Gemma 3's post_attention_layernorm is "post_attention_norm", Llama's "ffn_norm").
std::string gguf_tensor_name(std::string_view hf_name, std::string_view architecture = "llama");

}  // namespace marlin
