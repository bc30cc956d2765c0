// What a GGUF's tokenizer.ggml.* metadata means as an HF tokenizer: the normalizer,
// pre-tokenizer and decoder that transformers' GGUF integration (integrations/gguf/
// gguf_tokenizer_mapping.py) gives the model — for pre "smollm", those of SmolLM2's published
// tokenizer.json — written as tokenizer.json sections, plus the BPE options that go with them.
// The GGUF loader builds its pipeline from these sections and the tokenizer.json exporter writes
// them out, so the two cannot drift apart.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace marlin {
class GgufFile;
}

namespace marlin::tok {

enum class GgufVocabKind {
  kByteLevel,      // tokenizer.ggml.model "gpt2": GPT-2 byte alphabet, merges in the file
  kSentencePiece,  // "llama": Llama-2 style, Metaspace prefix space, merges from scores
  kGemma,          // "llama" in a gemma/gemma2/gemma3 file: whitespace tokens respelled, merges from file order
  kPhi3,           // "llama" in a phi3 file: the prefix space comes from the normalizer
};

struct GgufPipeline {
  GgufVocabKind kind = GgufVocabKind::kByteLevel;
  nlohmann::ordered_json normalizer;     // null when there is none
  nlohmann::ordered_json pre_tokenizer;  // null when there is none
  nlohmann::ordered_json decoder;
  bool byte_fallback = false;
  bool fuse_unk = false;
  std::optional<std::string> unk_token;  // the BPE model's unk_token, when it has one
};

// marlin::Error naming the key for a tokenizer.ggml.model or tokenizer.ggml.pre we do not support.
GgufPipeline gguf_pipeline(const GgufFile& gguf);

}  // namespace marlin::tok
