// The pieces a Tokenizer is assembled from (internal: filled by the GGUF and tokenizer.json
// loaders).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"

namespace marlin::tok {

struct TokenizerParts {
  std::unique_ptr<BpeModel> model;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Decoder decoder;
  std::vector<AddedToken> added_tokens;  // ids may lie past the model vocabulary
  std::vector<int32_t> prefix_ids;       // added by encode(add_special=true)
  std::vector<int32_t> suffix_ids;
  std::optional<int32_t> bos_id, eos_id;
  std::string chat_template;

  // Filled by Tokenizer::from_parts.
  AddedTokenMatcher raw_matcher;         // added tokens matched in the raw text
  AddedTokenMatcher normalized_matcher;  // added tokens matched after normalization
  std::vector<int32_t> added_index;      // id -> index into added_tokens, -1 if not added
  std::vector<int32_t> end_of_turn_ids;
  int32_t vocab_size = 0;
};

}  // namespace marlin::tok
