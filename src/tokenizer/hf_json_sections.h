// The tokenizer.json loader's readers for the pipeline sections, shared with the GGUF loader
// (which describes its pipeline in the same form: tokenizer/gguf_pipeline.h). Errors name
// `source`; a null section adds nothing.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"

namespace marlin::tok {

void add_hf_normalizer(const nlohmann::json& section, std::string_view source, Normalizer& out);
// Returns true when the chain ends in ByteLevel (the BPE model then sees raw bytes).
bool add_hf_pre_tokenizer(const nlohmann::json& section, std::string_view source, PreTokenizer& out);
void add_hf_decoder(const nlohmann::json& section, std::string_view source, Decoder& out);

}  // namespace marlin::tok
