// Tokenizer: BPE tokenizers with exact parity to HF `tokenizers` — byte-level BPE (GPT-2,
// SmolLM2, Llama-3, Qwen2/3) and SentencePiece-style BPE with byte fallback (Llama-2, Gemma) —
// loaded from GGUF metadata or a tokenizer.json.
//
//   auto tokenizer = Tokenizer::from_gguf(*gguf);
//   std::vector<int32_t> ids = tokenizer->encode("Hello world");
//   std::string text = tokenizer->decode(ids);
//
// Every method is const and safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace marlin {

class GgufFile;
namespace tok {
struct TokenizerParts;
}

class Tokenizer {
 public:
  // From llama.cpp's tokenizer.ggml.* metadata; marlin::Error for missing or unsupported
  // configurations (the message names the key or value).
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& gguf);
  // From a tokenizer.json; a tokenizer_config.json beside it (if present) supplies
  // add_bos_token/add_eos_token, bos/eos tokens and the chat template.
  static std::unique_ptr<Tokenizer> from_hf_json(const std::string& tokenizer_json_path);
  // Same from JSON text (config_json may be empty).
  static std::unique_ptr<Tokenizer> from_hf_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                                      std::string_view source_name);
  // Used by the loaders.
  static std::unique_ptr<Tokenizer> from_parts(std::unique_ptr<tok::TokenizerParts> parts);
  ~Tokenizer();

  // Token ids of `text` (any bytes: invalid UTF-8 becomes byte-level or byte-fallback tokens).
  // add_special adds the configured BOS/EOS (or template tokens); parse_special matches special
  // tokens written in the text (user-defined added tokens are always matched, as in HF).
  std::vector<int32_t> encode(std::string_view text, bool add_special = false, bool parse_special = true) const;
  // Text of the ids (HF decode: invalid UTF-8 becomes U+FFFD). marlin::Error for an id
  // outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The bytes the token stands for in decoded text (may be part of a UTF-8 character).
  std::string piece(int32_t id) const;
  // The token as the vocabulary spells it ("Ġworld", "▁the", "<0x0A>", "<|im_end|>").
  std::string_view token_text(int32_t id) const;

  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool add_bos() const;
  bool add_eos() const;
  // EOS and the model's end-of-turn tokens (<|im_end|>, <|eot_id|>, <|eom_id|>, <end_of_turn>,
  // <|endoftext|>, <|end|>).
  bool is_end_of_turn(int32_t id) const;
  // An added token's content, a vocabulary spelling, or (byte-level vocabularies) the raw text
  // of a token.
  std::optional<int32_t> find_token(std::string_view piece_text) const;
  bool is_special(int32_t id) const;
  // The chat template from the file's metadata, empty when there is none.
  const std::string& chat_template() const;

  // Spaces a streaming decoder drops from the start of the text (SentencePiece prefix space).
  size_t stream_leading_spaces_to_strip() const;

  // The pieces it is built from (for the tokenizer.json exporter).
  const tok::TokenizerParts& parts() const { return *parts_; }

 private:
  explicit Tokenizer(std::unique_ptr<tok::TokenizerParts> parts);
  void encode_segment(std::string_view segment, bool at_text_start, std::vector<int32_t>& out) const;
  void encode_normalized(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const;
  void check_id(int32_t id) const;

  std::unique_ptr<tok::TokenizerParts> parts_;
};

// Streams decoded text as tokens arrive, never splitting a UTF-8 character: bytes of an
// incomplete character are held back until it completes; bytes that cannot become valid are
// emitted as U+FFFD as soon as that is certain (or at flush).
class TokenStream {
 public:
  explicit TokenStream(const Tokenizer& tokenizer, bool skip_special = false);
  // The text that became complete with this token (often empty or a whole word).
  std::string push(int32_t id);
  // Whatever is held back, with an incomplete trailing character as U+FFFD; resets the stream.
  std::string flush();

 private:
  std::string take_complete(bool final);
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
  size_t strip_left_;
};

}  // namespace marlin
