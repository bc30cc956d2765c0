// Merges recovered from a vocabulary that ships none (SentencePiece-style GGUF files), the way
// transformers' generate_merges does: every split of a token into two tokens is a merge, and
// merges are ranked by the token's priority (higher first), then by longer left part, then
// longer right part, ties keeping vocabulary order.
#pragma once

#include <functional>

#include "tokenizer/vocab.h"

namespace marlin::tok {

// `priority(id)` is the key of the token with that id (its score, or minus its file position
// for Gemma). For a text held by several ids, the first id fixes the position in vocabulary
// order and the last id supplies the priority and the merged id (Python dict semantics).
MergeTable merges_from_vocab(const Vocab& vocab, const std::function<double(int32_t)>& priority);

}  // namespace marlin::tok
