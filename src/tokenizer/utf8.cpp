#include "tokenizer/utf8.h"

namespace marlin::tok {
namespace {

// The valid range of the second byte for a lead byte (Unicode Table 3-7); the remaining
// continuation bytes are always 0x80..0xBF.
struct LeadInfo {
  uint8_t length;       // total sequence length, 0 for a byte that cannot lead
  uint8_t second_low;
  uint8_t second_high;
};

LeadInfo lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace

size_t utf8_maximal_subpart(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  LeadInfo info = lead_info(s[pos]);
  if (info.length <= 1) return 1;
  size_t n = 1;
  if (pos + n >= text.size() || s[pos + n] < info.second_low || s[pos + n] > info.second_high) return n;
  ++n;
  while (n < info.length && pos + n < text.size() && s[pos + n] >= 0x80 && s[pos + n] <= 0xBF) ++n;
  return n;
}

size_t utf8_sequence_length(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  if (s[pos] < 0x80) return 1;
  LeadInfo info = lead_info(s[pos]);
  if (info.length == 0) return 0;
  return utf8_maximal_subpart(text, pos) == info.length ? info.length : 0;
}

size_t utf8_valid_prefix(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t n = utf8_sequence_length(text, pos);
    if (n == 0) return pos;
    pos += n;
  }
  return pos;
}

uint32_t utf8_decode(std::string_view text, size_t pos, size_t length) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data()) + pos;
  switch (length) {
    case 1: return s[0];
    case 2: return (uint32_t(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return (uint32_t(s[0] & 0x0F) << 12) | (uint32_t(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
      return (uint32_t(s[0] & 0x07) << 18) | (uint32_t(s[1] & 0x3F) << 12) | (uint32_t(s[2] & 0x3F) << 6) |
             (s[3] & 0x3F);
  }
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void utf8_append_lossy(std::string& out, std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t valid = pos + utf8_valid_prefix(bytes.substr(pos));
    out.append(bytes.data() + pos, valid - pos);
    if (valid == bytes.size()) break;
    out += kReplacementChar;
    pos = valid + utf8_maximal_subpart(bytes, valid);
  }
}

size_t utf8_count_chars(std::string_view text) {
  size_t count = 0;
  for (char c : text) count += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return count;
}

}  // namespace marlin::tok
