// Hugging Face tokenizer files for the tokenizer of a GGUF file: tokenizer.json (normalizer,
// pre-tokenizer, decoder, BPE vocabulary and merges, added tokens, a BOS/EOS TemplateProcessing)
// and tokenizer_config.json (bos/eos/unk/pad tokens, add_bos_token/add_eos_token, chat template),
// the files a transformers user would have for the model. Loading them with
// Tokenizer::from_hf_json_text, or in HF `tokenizers`/transformers, gives the ids, text and
// special-token behaviour of Tokenizer::from_gguf on the same file.
//
//   HfTokenizerFiles files = hf_tokenizer_files_from_gguf(*gguf);
//   write(dir / "tokenizer.json", files.tokenizer_json);
//   write(dir / "tokenizer_config.json", files.tokenizer_config_json);
//
// Vocabularies whose SentencePiece merges are implicit get the merges transformers derives for
// them (from scores, or file order for Gemma). A token text held by several ids keeps only the
// last of them in "vocab", as a Python dict would (encode never yields the others).
// marlin::Error for a tokenizer Tokenizer::from_gguf does not support, or for token text that
// is not valid UTF-8 (JSON cannot hold it).
#pragma once

#include <string>

namespace marlin {

class GgufFile;

struct HfTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};

// Both files from one build of the tokenizer (a 262k vocabulary takes about a second).
HfTokenizerFiles hf_tokenizer_files_from_gguf(const GgufFile& gguf);

std::string tokenizer_json_from_gguf(const GgufFile& gguf);
std::string tokenizer_config_json_from_gguf(const GgufFile& gguf);

}  // namespace marlin
