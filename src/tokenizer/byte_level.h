// GPT-2's byte-level alphabet: every byte is spelled as one printable code point so that a
// vocabulary of strings can hold arbitrary bytes ("Ġ" is the space byte 0x20).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace marlin::tok {

// The code point that spells `byte`.
uint32_t byte_to_code_point(uint8_t byte);

// The byte a code point spells, or nullopt when it is not in the alphabet.
std::optional<uint8_t> code_point_to_byte(uint32_t code_point);

// Spells raw bytes in the alphabet (appends to out).
void byte_level_spell(std::string& out, std::string_view bytes);

// The bytes a token spelled in the alphabet stands for; nullopt when any character of the
// token is outside the alphabet (HF then keeps the token's own UTF-8 bytes).
std::optional<std::string> byte_level_unspell(std::string_view token);

}  // namespace marlin::tok
