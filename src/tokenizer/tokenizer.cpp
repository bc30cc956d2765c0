#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_parts.h"
#include "tokenizer/utf8.h"

namespace marlin {

using tok::AddedMatch;
using tok::AddedToken;
using tok::TokenizerParts;

namespace {

// Tokens that end a turn in the chat formats we know.
constexpr std::string_view kEndOfTurnTokens[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>",
                                                 "<end_of_turn>", "<|endoftext|>", "<|end|>"};

struct EncodeScratch {
  tok::PieceBuffer pieces;
};

EncodeScratch& encode_scratch() {
  thread_local EncodeScratch s;
  return s;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_parts(std::unique_ptr<TokenizerParts> parts) {
  MARLIN_CHECK(parts && parts->model, "tokenizer: no model");
  TokenizerParts& p = *parts;
  p.vocab_size = p.model->vocab().size();
  for (const auto& t : p.added_tokens) {
    MARLIN_CHECK(t.id >= 0, "tokenizer: added token '{}' has negative id {}", t.content, t.id);
    MARLIN_CHECK(!t.content.empty(), "tokenizer: added token {} is empty", t.id);
    p.vocab_size = std::max(p.vocab_size, t.id + 1);
  }
  p.added_index.assign(static_cast<size_t>(p.vocab_size), -1);
  std::vector<AddedToken> raw, normalized;
  for (size_t i = 0; i < p.added_tokens.size(); ++i) {
    const AddedToken& t = p.added_tokens[i];
    if (p.added_index[static_cast<size_t>(t.id)] < 0) p.added_index[static_cast<size_t>(t.id)] = static_cast<int32_t>(i);
    if (t.normalized && !p.normalizer.empty()) {
      AddedToken n = t;
      p.normalizer.apply(n.content);
      normalized.push_back(std::move(n));
    } else {
      raw.push_back(t);
    }
  }
  // HF matches special tokens first among equal-length candidates; the trie keeps the first.
  auto specials_first = [](std::vector<AddedToken>& v) {
    std::stable_partition(v.begin(), v.end(), [](const AddedToken& t) { return t.special; });
  };
  specials_first(raw);
  specials_first(normalized);
  p.raw_matcher.build(raw);
  p.normalized_matcher.build(normalized);
  for (int32_t id : {p.bos_id.value_or(0), p.eos_id.value_or(0)}) {
    MARLIN_CHECK(id >= 0 && id < p.vocab_size, "tokenizer: special token id {} is outside the vocabulary of {}",
                 id, p.vocab_size);
  }
  for (int32_t id : p.prefix_ids) MARLIN_CHECK(id >= 0 && id < p.vocab_size, "tokenizer: template token id {} out of range", id);
  for (int32_t id : p.suffix_ids) MARLIN_CHECK(id >= 0 && id < p.vocab_size, "tokenizer: template token id {} out of range", id);
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer(std::move(parts)));
  for (std::string_view name : kEndOfTurnTokens) {
    auto id = tokenizer->find_token(name);
    if (id && tokenizer->is_special(*id)) tokenizer->parts_->end_of_turn_ids.push_back(*id);
  }
  return tokenizer;
}

Tokenizer::Tokenizer(std::unique_ptr<TokenizerParts> parts) : parts_(std::move(parts)) {}
Tokenizer::~Tokenizer() = default;

void Tokenizer::encode_normalized(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const {
  EncodeScratch& s = encode_scratch();
  tok::PieceBuffer& buf = s.pieces;
  MARLIN_CHECK(text.size() < UINT32_MAX / 4, "tokenizer: input text is too long ({} bytes)", text.size());
  buf.text.assign(text);
  buf.pieces.clear();
  buf.pieces.push_back({0, static_cast<uint32_t>(text.size()), at_text_start});
  parts_->pre_tokenizer.apply(buf);
  for (const auto& piece : buf.pieces) parts_->model->encode_word(buf.view(piece), out);
}

void Tokenizer::encode_segment(std::string_view segment, bool at_text_start, std::vector<int32_t>& out) const {
  const TokenizerParts& p = *parts_;
  size_t pos = 0;
  while (pos < segment.size()) {
    size_t valid = pos + tok::utf8_valid_prefix(segment.substr(pos));
    if (valid > pos) {
      std::string_view run = segment.substr(pos, valid - pos);
      bool run_at_start = at_text_start && pos == 0;
      if (p.normalizer.empty()) {
        encode_normalized(run, run_at_start, out);
      } else {
        std::string normalized(run);
        p.normalizer.apply(normalized);
        std::vector<AddedMatch> matches;
        p.normalized_matcher.find(normalized, true, matches);
        size_t at = 0;
        for (const auto& m : matches) {
          if (m.begin > at) encode_normalized(std::string_view(normalized).substr(at, m.begin - at), run_at_start && at == 0, out);
          out.push_back(m.id);
          at = m.end;
        }
        if (at < normalized.size()) encode_normalized(std::string_view(normalized).substr(at), run_at_start && at == 0, out);
      }
      pos = valid;
    }
    if (pos < segment.size()) {
      // Invalid UTF-8 (no HF equivalent): the bytes go straight to the model, which spells them
      // as byte-level symbols or <0xNN> fallback tokens.
      size_t end = pos;
      while (end < segment.size() && tok::utf8_sequence_length(segment, end) == 0) {
        end += tok::utf8_maximal_subpart(segment, end);
      }
      p.model->encode_word(segment.substr(pos, end - pos), out);
      pos = end;
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const TokenizerParts& p = *parts_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special) out.insert(out.end(), p.prefix_ids.begin(), p.prefix_ids.end());
  std::vector<AddedMatch> matches;
  p.raw_matcher.find(text, parse_special, matches);
  size_t at = 0;
  for (const auto& m : matches) {
    if (m.begin > at) encode_segment(text.substr(at, m.begin - at), at == 0, out);
    out.push_back(m.id);
    at = m.end;
  }
  if (at < text.size()) encode_segment(text.substr(at), at == 0, out);
  if (add_special) out.insert(out.end(), p.suffix_ids.begin(), p.suffix_ids.end());
  return out;
}

void Tokenizer::check_id(int32_t id) const {
  MARLIN_CHECK(id >= 0 && id < parts_->vocab_size, "tokenizer: token id {} is outside the vocabulary of {}", id,
               parts_->vocab_size);
}

std::string_view Tokenizer::token_text(int32_t id) const {
  check_id(id);
  int32_t added = parts_->added_index[static_cast<size_t>(id)];
  if (added >= 0) return parts_->added_tokens[static_cast<size_t>(added)].content;
  if (id < parts_->model->vocab().size()) return parts_->model->vocab().text(id);
  return {};
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    check_id(id);
    if (skip_special && is_special(id)) continue;
    tokens.emplace_back(token_text(id));
  }
  return parts_->decoder.decode(std::move(tokens));
}

std::string Tokenizer::piece(int32_t id) const { return parts_->decoder.token_bytes(token_text(id)); }

int32_t Tokenizer::vocab_size() const { return parts_->vocab_size; }
std::optional<int32_t> Tokenizer::bos_id() const { return parts_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return parts_->eos_id; }
bool Tokenizer::add_bos() const {
  return parts_->bos_id && std::find(parts_->prefix_ids.begin(), parts_->prefix_ids.end(), *parts_->bos_id) != parts_->prefix_ids.end();
}
bool Tokenizer::add_eos() const {
  return parts_->eos_id && std::find(parts_->suffix_ids.begin(), parts_->suffix_ids.end(), *parts_->eos_id) != parts_->suffix_ids.end();
}

bool Tokenizer::is_end_of_turn(int32_t id) const {
  if (parts_->eos_id && id == *parts_->eos_id) return true;
  const auto& eot = parts_->end_of_turn_ids;
  return std::find(eot.begin(), eot.end(), id) != eot.end();
}

std::optional<int32_t> Tokenizer::find_token(std::string_view piece_text) const {
  for (const auto& t : parts_->added_tokens) {
    if (t.content == piece_text) return t.id;
  }
  const tok::Vocab& vocab = parts_->model->vocab();
  if (auto id = vocab.find(piece_text)) return id;
  if (parts_->model->options().byte_level) {
    std::string spelled;
    tok::byte_level_spell(spelled, piece_text);
    return vocab.find(spelled);
  }
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= parts_->vocab_size) return false;
  int32_t added = parts_->added_index[static_cast<size_t>(id)];
  return added >= 0 && parts_->added_tokens[static_cast<size_t>(added)].special;
}

const std::string& Tokenizer::chat_template() const { return parts_->chat_template; }

size_t Tokenizer::stream_leading_spaces_to_strip() const { return parts_->decoder.leading_spaces_to_strip(); }

}  // namespace marlin
