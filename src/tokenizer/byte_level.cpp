#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace marlin::tok {
namespace {

// Printable Latin-1 bytes spell themselves; the remaining 68 bytes take 256, 257, ... in order.
struct Alphabet {
  std::array<uint32_t, 256> code_point{};
  std::array<int16_t, 324> byte_of{};  // indexed by code point (all spellings are < 324)
  Alphabet() {
    byte_of.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      code_point[b] = printable ? b : next++;
      byte_of[code_point[b]] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

uint32_t byte_to_code_point(uint8_t byte) { return alphabet().code_point[byte]; }

std::optional<uint8_t> code_point_to_byte(uint32_t code_point) {
  const auto& a = alphabet();
  if (code_point >= a.byte_of.size() || a.byte_of[code_point] < 0) return std::nullopt;
  return static_cast<uint8_t>(a.byte_of[code_point]);
}

void byte_level_spell(std::string& out, std::string_view bytes) {
  for (char c : bytes) utf8_append(out, byte_to_code_point(static_cast<uint8_t>(c)));
}

std::optional<std::string> byte_level_unspell(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    size_t n = utf8_sequence_length(token, pos);
    if (n == 0) return std::nullopt;
    auto byte = code_point_to_byte(utf8_decode(token, pos, n));
    if (!byte) return std::nullopt;
    out += static_cast<char>(*byte);
    pos += n;
  }
  return out;
}

}  // namespace marlin::tok
