#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace marlin {

TokenStream::TokenStream(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special), strip_left_(tokenizer.stream_leading_spaces_to_strip()) {}

std::string TokenStream::push(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.piece(id);
  while (strip_left_ > 0 && !pending_.empty()) {
    if (pending_[0] == ' ') {
      pending_.erase(0, 1);
      --strip_left_;
    } else {
      strip_left_ = 0;
    }
  }
  return take_complete(false);
}

std::string TokenStream::flush() {
  std::string out = take_complete(true);
  strip_left_ = tokenizer_.stream_leading_spaces_to_strip();
  return out;
}

std::string TokenStream::take_complete(bool final) {
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    size_t valid = pos + tok::utf8_valid_prefix(std::string_view(pending_).substr(pos));
    out.append(pending_, pos, valid - pos);
    pos = valid;
    if (pos == pending_.size()) break;
    // An ill-formed part that reaches the end may still be the start of a character.
    size_t bad = tok::utf8_maximal_subpart(pending_, pos);
    if (pos + bad == pending_.size() && !final) {
      uint8_t lead = static_cast<uint8_t>(pending_[pos]);
      bool can_lead = lead >= 0xC2 && lead <= 0xF4;
      if (can_lead) break;
    }
    out += tok::kReplacementChar;
    pos += bad;
  }
  pending_.erase(0, pos);
  return out;
}

}  // namespace marlin
