// Tokenizer::from_gguf: llama.cpp's tokenizer.ggml.* metadata, built the way transformers'
// GGUF integration (integrations/gguf/gguf_tokenizer_mapping.py) builds the HF tokenizer; the
// normalizer, pre-tokenizer and decoder come from tokenizer/gguf_pipeline.h.
#include <algorithm>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/gguf_pipeline.h"
#include "tokenizer/hf_json_sections.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_parts.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab_merges.h"

namespace marlin {
namespace {

using tok::TokenizerParts;

constexpr int64_t kTokenTypeControl = 3;
constexpr int64_t kTokenTypeUserDefined = 4;

// Python's str.isspace.
bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Gemma files store tokens of spaces as real spaces; GemmaTokenizer spells them with "▁", one
// per character: a token with a space that is otherwise all whitespace becomes "▁"*len.
std::optional<std::string> gemma_respelling(std::string_view token) {
  if (token.find(' ') == std::string_view::npos) return std::nullopt;
  size_t chars = 0;
  for (size_t pos = 0; pos < token.size(); ++chars) {
    size_t n = tok::utf8_sequence_length(token, pos);
    if (n == 0 || !is_python_space(tok::utf8_decode(token, pos, n))) return std::nullopt;
    pos += n;
  }
  std::string out;
  for (size_t i = 0; i < chars; ++i) out += "\u2581";
  return out;
}

const std::vector<GgufValue>& string_array(const GgufFile& gguf, std::string_view key) {
  const GgufValue* v = gguf.find(key);
  MARLIN_CHECK(v != nullptr, "gguf tokenizer: '{}' is missing", key);
  const auto* array = std::get_if<GgufArray>(&v->value);
  MARLIN_CHECK(array != nullptr && array->element_type == GgufType::STRING, "gguf tokenizer: '{}' is not an array of strings",
               key);
  return array->items;
}

std::optional<int32_t> token_id(const GgufFile& gguf, std::string_view key, int32_t vocab_size) {
  auto id = gguf.get_int(key);
  if (!id) return std::nullopt;
  MARLIN_CHECK(*id >= 0 && *id < vocab_size, "gguf tokenizer: {} = {} is outside the vocabulary of {}", key, *id,
               vocab_size);
  return static_cast<int32_t>(*id);
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  const tok::GgufPipeline pipeline = tok::gguf_pipeline(gguf);
  const bool byte_level = pipeline.kind == tok::GgufVocabKind::kByteLevel;
  const bool gemma = pipeline.kind == tok::GgufVocabKind::kGemma;

  const auto& tokens = string_array(gguf, "tokenizer.ggml.tokens");
  MARLIN_CHECK(!tokens.empty() && tokens.size() < (size_t{1} << 24), "gguf tokenizer: {} tokens is not a valid vocabulary",
               tokens.size());
  const auto n = static_cast<int32_t>(tokens.size());
  auto token_at = [&](int32_t i) -> const std::string& { return std::get<std::string>(tokens[static_cast<size_t>(i)].value); };
  std::vector<int64_t> types = gguf.get_int_array("tokenizer.ggml.token_type").value_or(std::vector<int64_t>{});
  MARLIN_CHECK(types.empty() || types.size() == tokens.size(), "gguf tokenizer: {} token types for {} tokens", types.size(),
               tokens.size());

  // The vocabulary as the HF tokenizer spells it.
  size_t bytes = 0;
  for (const auto& t : tokens) bytes += std::get<std::string>(t.value).size();
  tok::Vocab vocab;
  vocab.resize(n, bytes + bytes / 8);
  std::string spelled;
  for (int32_t i = 0; i < n; ++i) {
    const std::string& text = token_at(i);
    if (byte_level && !tok::byte_level_unspell(text)) {
      spelled.clear();
      tok::byte_level_spell(spelled, text);
      vocab.set(i, spelled);
    } else if (gemma) {
      auto respelled = gemma_respelling(text);
      vocab.set(i, respelled ? *respelled : text);
    } else {
      vocab.set(i, text);
    }
  }
  vocab.build_index();

  tok::MergeTable merges;
  if (gguf.find("tokenizer.ggml.merges") != nullptr) {
    const auto& items = string_array(gguf, "tokenizer.ggml.merges");
    merges.reserve(items.size());
    for (size_t rank = 0; rank < items.size(); ++rank) {
      const std::string& m = std::get<std::string>(items[rank].value);
      size_t space = m.find(' ');
      MARLIN_CHECK(space != std::string::npos && m.find(' ', space + 1) == std::string::npos,
                   "gguf tokenizer: merge {} ('{}') is not 'a b'", rank, m);
      std::string_view left = std::string_view(m).substr(0, space), right = std::string_view(m).substr(space + 1);
      auto l = vocab.find(left), r = vocab.find(right);
      auto merged = vocab.find(std::string(left) + std::string(right));
      MARLIN_CHECK(l && r && merged, "gguf tokenizer: merge {} ('{}') uses a token missing from the vocabulary", rank, m);
      merges.insert(*l, *r, {static_cast<int32_t>(rank), *merged});
    }
  } else {
    MARLIN_CHECK(!byte_level, "gguf tokenizer: a gpt2 tokenizer needs tokenizer.ggml.merges");
    if (gemma) {
      // Gemma's scores do not follow its merge order; its file order does.
      merges = tok::merges_from_vocab(vocab, [](int32_t id) { return -static_cast<double>(id); });
    } else {
      auto scores = gguf.get_float_array("tokenizer.ggml.scores");
      MARLIN_CHECK(scores && scores->size() == tokens.size(),
                   "gguf tokenizer: a llama tokenizer without merges needs one tokenizer.ggml.scores entry per token");
      merges = tok::merges_from_vocab(vocab, [&](int32_t id) { return (*scores)[static_cast<size_t>(id)]; });
    }
  }

  auto parts = std::make_unique<TokenizerParts>();
  tok::BpeOptions options;
  options.byte_level = byte_level;
  options.byte_fallback = pipeline.byte_fallback;
  options.fuse_unk = pipeline.fuse_unk;
  if (pipeline.unk_token) options.unk_id = vocab.find(*pipeline.unk_token);
  tok::add_hf_normalizer(nlohmann::json(pipeline.normalizer), "gguf pipeline", parts->normalizer);
  tok::add_hf_pre_tokenizer(nlohmann::json(pipeline.pre_tokenizer), "gguf pipeline", parts->pre_tokenizer);
  tok::add_hf_decoder(nlohmann::json(pipeline.decoder), "gguf pipeline", parts->decoder);

  // Control tokens become special added tokens (in a byte-level vocabulary only those spelled in
  // the byte alphabet: others are llama.cpp mislabels); user-defined ones plain added tokens.
  for (int32_t i = 0; i < static_cast<int32_t>(types.size()); ++i) {
    const int64_t type = types[static_cast<size_t>(i)];
    if (type != kTokenTypeControl && type != kTokenTypeUserDefined) continue;
    const std::string& text = token_at(i);
    if (text.empty()) continue;
    if (type == kTokenTypeControl && byte_level && !tok::byte_level_unspell(text)) continue;
    auto id = vocab.find(text);
    if (!id) continue;  // e.g. a Gemma whitespace token, reachable through "▁" spelling instead
    parts->added_tokens.push_back({text, *id, type == kTokenTypeControl, false, false, false});
  }
  // transformers' tokenizer classes also register their default special tokens (GPT2Tokenizer
  // <|endoftext|>, LlamaTokenizer <unk> <s> </s>, GemmaTokenizer <unk> <bos> <eos> <pad> <mask>);
  // those the vocabulary holds are matched whole too. (transformers would append the missing
  // ones as new ids past the model's vocabulary; we leave them out.)
  std::vector<std::string_view> class_specials;
  if (byte_level) class_specials = {"<|endoftext|>"};
  else if (gemma) class_specials = {"<unk>", "<bos>", "<eos>", "<pad>", "<mask>"};
  else class_specials = {"<unk>", "<s>", "</s>"};
  for (std::string_view text : class_specials) {
    auto id = vocab.find(text);
    bool added = std::any_of(parts->added_tokens.begin(), parts->added_tokens.end(),
                             [&](const tok::AddedToken& t) { return t.content == text; });
    if (id && !added) parts->added_tokens.push_back({std::string(text), *id, true, false, false, false});
  }
  parts->model = std::make_unique<tok::BpeModel>(std::move(vocab), std::move(merges), options);

  parts->bos_id = token_id(gguf, "tokenizer.ggml.bos_token_id", n);
  parts->eos_id = token_id(gguf, "tokenizer.ggml.eos_token_id", n);
  // llama.cpp adds BOS to a SentencePiece vocabulary unless the file says otherwise.
  const bool add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(!byte_level);
  const bool add_eos = gguf.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  if (add_bos && parts->bos_id) parts->prefix_ids.push_back(*parts->bos_id);
  if (add_eos && parts->eos_id) parts->suffix_ids.push_back(*parts->eos_id);
  parts->chat_template = gguf.get_string("tokenizer.chat_template").value_or("");
  return from_parts(std::move(parts));
}

}  // namespace marlin
